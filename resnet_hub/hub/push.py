"""Publish Hub bundles: one repo per config, at most one commit per push, nothing unsafe.

``python scripts/push_to_hub.py DIR --repo-id NS/NAME`` pushes one bundle;
``--all BUNDLES_DIR`` pushes every subfolder, named after its config, to
``resnet_hub.hub_repo_id(name)``. Every bundle is checked by
:func:`resnet_hub.hub.bundle.validate_bundle` before anything is sent. Files the Hub already holds
with the same content are not sent again, so re-pushing an unchanged bundle makes no commit; a
README.md on the Hub that differs from ours (someone edited the card there) is kept unless
``--overwrite-card``. ``--dry-run`` prints the plan and opens no connection.

A failing Hub call (401, 403, 429, 5xx after huggingface_hub's own retries, a dropped connection)
ends the command with one line naming the repo, the step and the reason, and exit status 1; the
commit is the last step, so the Hub holds all of a bundle or none of it, and the same command
run again completes. With ``--all`` the line also says which repos were pushed and which not.

The token (``--token``, ``HF_TOKEN`` or the saved ``hf auth login``) goes to one ``HfApi`` client and nowhere
else: it is never printed, logged or written, and is scrubbed from any error message.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from huggingface_hub import CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import (
    are_progress_bars_disabled,
    disable_progress_bars,
    enable_progress_bars,
    validate_repo_id,
)
from huggingface_hub.utils import logging as hf_logging
from huggingface_hub.utils.sha import git_hash

from resnet_hub import __version__
from resnet_hub.commands import CommandError
from resnet_hub.zoo.configs import hub_repo_id, load_config

from .bundle import BUNDLE_FILES, CARD, Bundle, BundleFile, validate_bundle

__all__ = ["add_arguments", "run", "push_bundle", "plan_pushes", "check_repo_id", "PushResult"]

# What a failing Hub call raises: HfHubHTTPError is an OSError (as are socket errors and timeouts);
# connection errors are the HTTP library's own HTTPError (httpx in huggingface_hub 1.x and 2.x),
# found through HfHubHTTPError's bases so that this does not depend on which library that is.
# the repo folder of the ONNX export: onnx/model.onnx is where optimum and transformers.js look
ONNX_DIR = "onnx"
NETWORK_ERRORS = (OSError, *[c for c in HfHubHTTPError.__mro__[1:] if c.__name__ == "HTTPError"])


@dataclass
class PushResult:
    repo_id: str
    committed: list[str] = field(default_factory=list)  # files in the commit; empty: none was made
    card_kept: bool = False  # the Hub's README.md differed from ours and was left as it is
    url: str | None = None  # the commit, or the pull request with --create-pr


def check_repo_id(repo_id: str) -> str:
    """``NS/NAME`` by huggingface_hub's rules, or ValueError saying what a repo id looks like."""
    try:
        if repo_id.count("/") != 1:
            raise HFValidationError("it must be NAMESPACE/NAME")
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(f"invalid repo id {repo_id!r}: {' '.join(str(e).split())} "
                         "(e.g. resnet-hub/resnet50_8xb32_in1k: letters, digits, '-', '_', '.')") from None
    return repo_id


def plan_pushes(bundle: str | None, repo_id: str | None, all_dir: str | None) -> list[tuple[str, Bundle]]:
    """(repo id, checked bundle) for every push asked for; every check happens before any push."""
    if all_dir:
        if bundle or repo_id:
            raise ValueError("--all takes repo ids from the folder names; give either DIR --repo-id NS/NAME "
                             "or --all BUNDLES_DIR, not both")
        root = Path(all_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"no bundles folder {root}")
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise FileNotFoundError(f"{root} holds no bundle folders (one per config, named after it)")
        plans = []
        for folder in folders:
            try:
                load_config(folder.name)
            except ValueError as e:
                raise ValueError(f"{folder}: under --all a bundle folder is named after its config: {e}") from None
            checked = validate_bundle(folder)
            if checked.config_name not in (None, folder.name):
                raise ValueError(f"{folder}: its weights are config {checked.config_name!r}, "
                                 f"not {folder.name!r} as the folder says")
            plans.append((check_repo_id(hub_repo_id(folder.name)), checked))
        return plans
    if not bundle or not repo_id:
        raise ValueError("give a bundle folder and --repo-id NS/NAME, or --all BUNDLES_DIR")
    check_repo_id(repo_id)
    return [(repo_id, validate_bundle(bundle))]


def _one_line(error: BaseException, token: str | None) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text.replace(token, "***") if token else text


def _network_cause(error: BaseException) -> BaseException | None:
    """The network error behind ``error``: itself, or what huggingface_hub wrapped (an LFS upload's RuntimeError)."""
    while error is not None:
        if isinstance(error, NETWORK_ERRORS):
            return error
        error = error.__cause__
    return None


def _reason(error: BaseException) -> str:
    """What went wrong, in the user's terms first; the Hub's own words after."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    said = getattr(error, "server_message", None) or str(error)
    if status == 401:
        return f"the Hub refused the token (401; set HF_TOKEN or run `hf auth login` with a write token): {said}"
    if status == 403:
        return f"the token may not write there (403 Forbidden): {said}"
    if status == 429:
        wait = response.headers.get("Retry-After")
        return f"rate limited by the Hub (429{f', retry after {wait} s' if wait else ''}): {said}"
    if status is not None and status >= 500:
        return f"the Hub had a server error ({status}; try again later): {said}"
    if status is None and isinstance(error, NETWORK_ERRORS):
        return f"connection failed ({type(error).__name__}): {error}"
    return said


@contextmanager
def _hub_step(what: str, step: str, token: str | None) -> Iterator[None]:
    """Turn a failing Hub call into one line naming what failed, with the token scrubbed."""
    try:
        yield
    except (*NETWORK_ERRORS, RuntimeError, ValueError) as e:
        cause = _network_cause(e)
        if isinstance(e, RuntimeError) and cause is None:
            raise  # not the network: a bug, shown with its traceback
        reason = _reason(cause or e)
        if cause is not None and cause is not e:  # e.g. "Error while uploading 'model.safetensors' to the Hub."
            reason = f"{str(e).rstrip('.')}: {reason}"
        raise CommandError(f"{what} failed at {step}: {_one_line(reason, token)} (local files untouched)") from None


@contextmanager
def _quiet_client() -> Iterator[None]:
    """huggingface_hub's retry warnings (and, off a terminal, its progress bars) would bury the one error line."""
    verbosity, bars_off = hf_logging.get_verbosity(), are_progress_bars_disabled()
    hf_logging.set_verbosity_error()
    if not sys.stderr.isatty():
        disable_progress_bars()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if not bars_off:
            enable_progress_bars()


def _same_content(local: BundleFile, remote: RepoFile | None) -> bool:
    """Whether the Hub's file is byte-identical to ours, from its metadata alone.

    LFS files carry their sha256; other files their git blob id (a sha1 of the bytes).
    """
    if remote is None or remote.size != local.size:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == local.sha256
    return remote.blob_id == git_hash(local.path.read_bytes())


def push_bundle(api: HfApi, bundle: Bundle, repo_id: str, *, private: bool = False, revision: str | None = None,
                create_pr: bool = False, overwrite_card: bool = False, token: str | None = None,
                echo: Callable[[str], None] = print, extra: Sequence[BundleFile] = ()) -> PushResult:
    """Push one checked bundle to ``repo_id``: create the repo if needed, then at most one commit.
    ``extra`` files (``name`` is their path in the repo, e.g. ``onnx/model.onnx``) go in the same commit."""
    result = PushResult(repo_id)
    what = f"pushing {bundle.path} to {repo_id}"
    with _hub_step(what, "create_repo", token):
        api.create_repo(repo_id, private=True if private else None, exist_ok=True)
    if revision and revision != "main" and not revision.startswith("refs/"):
        with _hub_step(what, f"create_branch {revision}", token):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
    with _hub_step(what, "get_paths_info", token):
        remote = {f.path: f for f in api.get_paths_info(repo_id, [*BUNDLE_FILES, *(f.name for f in extra)],
                                                        revision=revision) if isinstance(f, RepoFile)}
    changed = [f for f in (*bundle.files, *extra) if not _same_content(f, remote.get(f.name))]
    if not overwrite_card and CARD in remote and any(f.name == CARD for f in changed):
        changed = [f for f in changed if f.name != CARD]
        result.card_kept = True
        echo(f"{repo_id}: README.md on the Hub differs from ours and was kept (--overwrite-card replaces it)")
    if not changed:
        echo(f"{repo_id}: up to date, no commit")
        return result
    names = [f.name for f in changed]
    operations = [CommitOperationAdd(path_in_repo=f.name, path_or_fileobj=str(f.path)) for f in changed]
    name = bundle.config_name or repo_id.split("/")[1]
    with _hub_step(what, "create_commit", token):
        info = api.create_commit(
            repo_id, operations, commit_message=f"Upload {name}: {', '.join(names)}",
            commit_description=f"Pushed by resnet_hub {__version__} (scripts/push_to_hub.py).",
            revision=revision, create_pr=create_pr,
        )
    result.committed, result.url = names, info.pr_url or info.commit_url
    echo(f"{repo_id}: committed {', '.join(names)}: {result.url}")
    return result


def _card_repo_note(repo_id: str, bundle: Bundle) -> str | None:
    named = set(re.findall(r"hf-hub:([\w.-]+/[\w.-]+)", bundle.card_text))
    if named and named != {repo_id}:
        return (f"note: {bundle.path / CARD} shows hf-hub:{sorted(named)[0]}, not {repo_id}; "
                "set RESNET_HUB_NAMESPACE and rewrite the bundle for a card that matches")
    return None


def _print_plan(plans: list[tuple[str, Bundle]], args: argparse.Namespace,
                extras: dict[str, tuple[BundleFile, ...]]) -> None:
    print("dry run: nothing is sent to the Hub")
    for repo_id, bundle in plans:
        how = "pull request against" if args.create_pr else "commit to"
        print(f"{repo_id} <- {bundle.path} ({how} {args.revision or 'main'}"
              f"{', private' if args.private else ''})")
        for f in (*bundle.files, *extras.get(repo_id, ())):
            print(f"  {f.name:<24} {f.size:>13,} bytes  sha256 {f.sha256}")
        note = _card_repo_note(repo_id, bundle)
        if note:
            print(f"  {note}")
    if args.collection:
        print(f"collection {args.collection!r} in {plans[0][0].split('/')[0]}: {len(plans)} repos")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", nargs="?", metavar="DIR",
                        help="a bundle folder (model.safetensors, config.json, README.md), as the converter writes")
    parser.add_argument("--repo-id", metavar="NS/NAME", help="the Hub model repo to push DIR to")
    parser.add_argument("--all", dest="all_dir", metavar="BUNDLES_DIR",
                        help="push every subfolder of BUNDLES_DIR, named after its config, to "
                             "{RESNET_HUB_NAMESPACE}/{config}")
    parser.add_argument("--private", action="store_true", help="create new repos private (existing ones keep theirs)")
    parser.add_argument("--revision", metavar="BRANCH", help="branch to commit to (created if missing); default main")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing directly")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the bundles and print the plan (repo, files, sizes, sha256); no network")
    parser.add_argument("--overwrite-card", action="store_true",
                        help="replace a README.md on the Hub that differs from the bundle's (default: keep it)")
    parser.add_argument("--with-onnx", action="store_true",
                        help="also export each bundle to ONNX (checked against timm, see resnet-hub export) and add "
                             f"{ONNX_DIR}/model.onnx and {ONNX_DIR}/preprocessing.json in the same commit")
    parser.add_argument("--token", metavar="TOKEN",
                        help="Hugging Face write token, as `hf upload --token` (default: HF_TOKEN or the one saved by "
                             "`hf auth login`); never printed")
    parser.add_argument("--collection", metavar="TITLE",
                        help="also add every pushed repo to the Hub collection TITLE in their namespace")


def run(args: argparse.Namespace) -> int:
    plans = plan_pushes(args.bundle, args.repo_id, args.all_dir)
    token = None if args.dry_run else args.token or get_token()
    if not args.dry_run and not token:
        raise CommandError("no Hugging Face token: pass --token, set HF_TOKEN or run `hf auth login` (nothing was "
                           "pushed)")
    with tempfile.TemporaryDirectory(prefix="resnet_hub_onnx_") as tmp:
        # every export is made and checked before anything is sent: one that fails pushes nothing
        extras = {repo_id: onnx_files(bundle, Path(tmp) / str(i)) for i, (repo_id, bundle) in enumerate(plans)
                  } if args.with_onnx else {}
        if args.dry_run:
            _print_plan(plans, args, extras)
            return 0
        api = HfApi(token=token, library_name="resnet_hub", library_version=__version__)
        with _quiet_client():
            _push_all(api, plans, args, token, extras)
    return 0


def onnx_files(bundle: Bundle, folder: Path) -> tuple[BundleFile, ...]:
    """The bundle exported to ONNX in ``folder`` (:func:`resnet_hub.export.export_model`, checked against the
    bundle's timm model), as files for the repo's ``onnx/`` folder: model.onnx and preprocessing.json."""
    from resnet_hub.export import MODEL_FILES, PREPROCESSING_FILE, export_model
    from resnet_hub.hashing import sha256_file
    from resnet_hub.inference import get_model

    export_model(get_model(f"local-dir:{bundle.path}", pretrained=True), folder, "onnx")
    return tuple(BundleFile(f"{ONNX_DIR}/{n}", folder / n, (folder / n).stat().st_size, sha256_file(folder / n))
                 for n in (MODEL_FILES["onnx"], PREPROCESSING_FILE))


def _push_all(api: HfApi, plans: list[tuple[str, Bundle]], args: argparse.Namespace, token: str,
              extras: dict[str, tuple[BundleFile, ...]]) -> None:
    """Push the repos in order; on a failure, say which are on the Hub and which a re-run will push."""
    for i, (repo_id, bundle) in enumerate(plans):
        note = _card_repo_note(repo_id, bundle)
        if note:
            print(note)
        try:
            push_bundle(api, bundle, repo_id, private=args.private, revision=args.revision,
                        create_pr=args.create_pr, overwrite_card=args.overwrite_card, token=token,
                        extra=extras.get(repo_id, ()))
        except CommandError as e:
            if len(plans) == 1:
                raise
            pushed = ", ".join(r for r, _ in plans[:i]) or "none"
            raise CommandError(f"{e}; pushed: {pushed}; not pushed: {', '.join(r for r, _ in plans[i:])} "
                               "(run the same command again to push them)") from None
    if args.collection:
        namespace = plans[0][0].split("/")[0]
        with _hub_step(f"adding {len(plans)} repos to collection {args.collection!r}", "the collection", token):
            collection = api.create_collection(args.collection, namespace=namespace, private=args.private,
                                               exists_ok=True)
            for repo_id, _ in plans:
                api.add_collection_item(collection.slug, repo_id, "model", exists_ok=True)
        print(f"collection {collection.url}: {len(plans)} repos")
