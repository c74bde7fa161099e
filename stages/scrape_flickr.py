"""Stage scrape_flickr: photos uploaded in a window, with views -> <out>/photos.csv
and <out>/shards/ (the images in tar shards, dareg.shards).

source: demo serves synthetic photos from a loopback stand-in of Flickr (throwaway key and secret)
and runs the same flickrapi code against it, with "now" fixed at flickr.demo_now (views and days
online count to it, so a rerun writes the same photos.csv); source: api reads FLICKR_API_KEY /
FLICKR_API_SECRET and the real clock.
"""
import argparse
import logging
import secrets
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

from dareg import cli, download, flickr, io, params
from dareg.demo import flickr_api, social
from dareg.params import ParamsError

# The stand-in is local, so the demo need not keep to Flickr's 3,600 calls an hour.
DEMO_CALLS_PER_SECOND = 50.0
log = logging.getLogger("scrape_flickr")


def open_service(cfg: params.Flickr, window: tuple[int, int], clock: Callable[[], float],
                 stack: ExitStack) -> tuple[str, str, str, float]:
    """(key, secret, REST URL, calls a second): from the environment, or a demo stand-in on `stack`
    whose views grow until `clock`'s now."""
    if cfg.source == "api":
        return *cli.env_credentials("flickr", "FLICKR_API_KEY", "FLICKR_API_SECRET"), cfg.rest_url, cfg.calls_per_second
    if clock() <= window[1]:
        raise ParamsError(f"params.yaml: flickr.demo_now {cfg.demo_now!r} is not after "
                          f"flickr.max_upload_date {cfg.max_upload_date!r}; the demo's photos "
                          f"would have no days online: set demo_now later")
    api_key, api_secret = secrets.token_hex(16), secrets.token_hex(8)
    demo = social.flickr_demo(cfg.demo_photos, cfg.demo_seed, window)
    base_url = stack.enter_context(flickr_api.flickr_server(demo, api_key, api_secret, now=clock))
    return api_key, api_secret, f"{base_url}/services/rest/", DEMO_CALLS_PER_SECOND


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="output folder (photos.csv, shards/)")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--store", required=True,
                        help="download store kept between runs (not a DVC output): files/, manifest.jsonl")
    args = parser.parse_args()
    config = params.load()
    cfg = config.flickr
    search = flickr.Search.from_params(cfg)
    clock = download.scrape_clock(cfg.source, cfg.demo_now)
    with ExitStack() as stack:
        api_key, api_secret, rest_url, calls_per_second = open_service(
            cfg, (search.min_upload, search.max_upload), clock, stack)
        client = flickr.connect(api_key, api_secret, rest_url, download.make_session(2),
                                config.download.read_timeout, config.download.retries,
                                config.download.backoff)
        photos, metrics = flickr.scrape(client, search, args.out, config.download, calls_per_second,
                                        args.store, clock)
    if cfg.source == "demo":
        photos["url"] = [social.stable_url(url, rest_url) for url in photos["url"]]
    io.write_csv(Path(args.out) / "photos.csv", photos)
    io.write_json(args.metrics, metrics)
    log.info("kept %d images of %d photos listed; outcomes %s", metrics["kept"], metrics["listed"],
             metrics["outcomes"])


if __name__ == "__main__":
    cli.run(main)
