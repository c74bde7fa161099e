"""Stage scrape_reddit: Reddit posts with direct image links -> <out>/posts.csv
and <out>/shards/ (the images in tar shards, dareg.shards).

source: demo serves synthetic posts from a loopback stand-in of Reddit (throwaway credentials) and
runs the same praw code against it, with "now" fixed at reddit.demo_now (so a rerun writes the same
posts.csv); source: api reads REDDIT_CLIENT_ID / REDDIT_CLIENT_SECRET and the real clock.
"""
import argparse
import logging
import secrets
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

from dareg import cli, download, io, params, reddit
from dareg.demo import reddit_api, social

# The stand-in is local: Reddit's own quota (1,000 requests per 10 minutes) would make prawcore
# pace the demo to under 2 requests a second.
DEMO_QUOTA = 100_000
log = logging.getLogger("scrape_reddit")


def open_service(cfg: params.Reddit, clock: Callable[[], float],
                 stack: ExitStack) -> tuple[str, str, str | None]:
    """(client id, secret, base URL): from the environment, or a demo stand-in on `stack` whose
    time filters count back from `clock`."""
    if cfg.source == "api":
        return *cli.env_credentials("reddit", "REDDIT_CLIENT_ID", "REDDIT_CLIENT_SECRET"), cfg.base_url
    client_id, client_secret = f"demo-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    demo = social.reddit_demo(cfg.demo_posts, cfg.demo_seed, cfg.subreddits)
    base_url = stack.enter_context(reddit_api.reddit_server(demo, client_id, client_secret,
                                                            DEMO_QUOTA, now=clock))
    return client_id, client_secret, base_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="output folder (posts.csv, shards/)")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--store", required=True,
                        help="download store kept between runs (not a DVC output): files/, manifest.jsonl")
    args = parser.parse_args()
    config = params.load()
    cfg = config.reddit
    clock = download.scrape_clock(cfg.source, cfg.demo_now)
    with ExitStack() as stack:
        client_id, client_secret, base_url = open_service(cfg, clock, stack)
        ids = reddit.read_ids(cfg.ids_csv) if cfg.ids_csv else None
        query = reddit.Query(cfg.subreddits, cfg.listing, cfg.time_filter, cfg.limit, ids)
        client = reddit.connect(client_id, client_secret, cfg.user_agent, base_url,
                                download.make_session(2))
        posts, metrics = reddit.scrape(client, query, args.out, config.download, args.store, clock)
    if cfg.source == "demo":
        posts["url"] = [social.stable_url(url, base_url) for url in posts["url"]]
    io.write_csv(Path(args.out) / "posts.csv", posts)
    io.write_json(args.metrics, metrics)
    log.info("kept %d images of %d posts listed; outcomes %s", metrics["kept"], metrics["listed"],
             metrics["outcomes"])


if __name__ == "__main__":
    cli.run(main)
