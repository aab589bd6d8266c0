"""`segassist serve` and `segassist weights`: registered into the `segassist` parser by entry points."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from converters.errors import SegassistError
from ml_backend.settings import ENGINES, ENV_VARS, MODE_CHOICES, Settings

if TYPE_CHECKING:
    from flask import Flask


def register(subparsers: argparse._SubParsersAction) -> None:
    """The backend's commands, added to the `segassist` parser (the `segassist.commands` entry point)."""
    from ml_backend.prelabel.command import register_prelabel

    register_serve(subparsers)
    register_weights(subparsers)
    register_prelabel(subparsers)


def register_serve(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the Label Studio ML backend",
        description="Serve the Label Studio ML backend with gunicorn (one process, threads). "
        "Every option is also an environment variable, shown in brackets; the option wins.",
    )
    for name, flag, kind, extra in (
        ("host", "--host", str, {}),
        ("port", "--port", int, {}),
        ("engine", "--engine", str, {"choices": tuple(ENGINES)}),
        ("model", "--model", str, {"metavar": "NAME_OR_PATH"}),
        ("mode", "--mode", str, {"choices": MODE_CHOICES}),
        ("device", "--device", str, {"metavar": "auto|cpu|cuda[:N]"}),
        ("threads", "--threads", int, {}),
    ):
        default = Settings.__dataclass_fields__[name].default
        parser.add_argument(
            flag, dest=name, type=kind, default=None, help=f"[{ENV_VARS[name]}] default: {default}", **extra
        )
    parser.set_defaults(handler=_serve)


def register_weights(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("weights", help="list or download model weights")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="the torchvision architectures and whether their weights are cached")
    download = actions.add_parser(
        "download",
        help="download weights into the framework cache (needs internet)",
        description="NAME is a torchvision architecture (see `weights list`) or a Hugging Face model id "
        "(ORG/NAME) for the transformers engine.",
    )
    download.add_argument("name", metavar="NAME")
    parser.set_defaults(handler=_weights)


def _serve(args: argparse.Namespace) -> int:
    from ml_backend.app import configure_logging, create_app

    settings = Settings.from_env(**{name: getattr(args, name) for name in ENV_VARS if hasattr(args, name)})
    configure_logging(settings)
    run_server(settings, lambda: create_app(settings))
    return 0


def run_server(settings: Settings, make_app: Callable[[], Flask]) -> None:
    """Serve `make_app()` with gunicorn as `segassist serve` does: one worker process (one model copy) whose
    threads keep /health answering during a long /predict. `make_app` runs in the worker; a SegassistError
    there is said in one line and the process exits 2."""
    import multiprocessing

    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    # Set by the worker (a fork of this process) when it has said why it cannot start.
    unusable = multiprocessing.Value("b", 0, lock=False)

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{settings.host}:{settings.port}")
            self.cfg.set("workers", 1)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", settings.threads)
            self.cfg.set("timeout", 0)
            # gunicorn's control socket has one path per user: two backends on one machine would share it.
            self.cfg.set("control_socket_disable", True)

        def load(self) -> Flask:
            try:
                return make_app()
            except SegassistError as error:
                # One line, no traceback; the exit code tells gunicorn the worker cannot boot.
                print(f"segassist serve: error: {error}", file=sys.stderr, flush=True)
                unusable.value = 1
                sys.exit(Arbiter.WORKER_BOOT_ERROR)

        def run(self) -> None:
            QuietArbiter(self).run()

    class QuietArbiter(Arbiter):
        def reap_workers(self) -> None:
            if unusable.value:
                # The worker has said why: stop without gunicorn's lines about it; exit 2, unusable input.
                unusable.value = 0  # stop() reaps again
                self.WORKERS.clear()
                self.stop(graceful=False)
                sys.exit(2)
            super().reap_workers()

    Server().run()


def _weights(args: argparse.Namespace) -> int:
    from ml_backend.engines import torchvision_engine
    from ml_backend.engines.torch_utils import weights_path

    architectures = torchvision_engine.ARCHITECTURES
    if args.action == "list":
        for name, spec in architectures.items():
            try:
                where = f"cached at {weights_path(None, spec.weights.url)}"
            except SegassistError:
                where = "not cached"
            print(f"{name}\t{where}")
        return 0
    if args.name in architectures:
        _download_torchvision(architectures[args.name].weights.url)
    elif "/" in args.name:
        _download_huggingface(args.name)
    else:
        raise SegassistError(
            f"unknown weights {args.name!r}: name a torchvision architecture ({', '.join(architectures)}) "
            "or a Hugging Face model id ORG/NAME"
        )
    return 0


def _download_torchvision(url: str) -> None:
    import torch

    from ml_backend.engines.torch_utils import hub_checkpoint_path

    target = hub_checkpoint_path(url)
    if target.is_file():
        print(f"already cached: {target}")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    # torchvision file names end in the first hex digits of the file's sha256; download checks them.
    hash_prefix = target.stem.rsplit("-", 1)[-1]
    try:
        torch.hub.download_url_to_file(url, str(target), hash_prefix=hash_prefix, progress=True)
    except Exception as error:  # urllib raises several types when offline
        raise SegassistError(
            f"cannot download {url}: {error}. Download it on a machine with internet and copy it here",
            file=str(target),
        ) from None
    print(f"saved {target}")


def _download_huggingface(model_id: str) -> None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise SegassistError(
            "the transformers engine is not installed: pip install 'segassist[transformers]'"
        ) from None
    try:
        path = snapshot_download(model_id)
        if json.loads((Path(path) / "config.json").read_text()).get("model_type") == "oneformer":
            from transformers import AutoProcessor

            # OneFormer's processor fetches its class info file (another hub repo) when first loaded.
            AutoProcessor.from_pretrained(path)
    except Exception as error:  # huggingface_hub raises many types when offline or the id is wrong
        raise SegassistError(
            f"cannot download {model_id} from the Hugging Face hub ({type(error).__name__}); on a machine "
            "with internet run `segassist weights download` and copy its Hugging Face cache folder here, "
            "or give --model a local save_pretrained folder"
        ) from None
    print(f"saved {model_id} in {path}")
