"""`nerf-app <verb>`: the command-line entry point.

Each verb lives in its own module under :mod:`nerf_app.commands` and provides
``add_arguments(parser)`` and ``run(args) -> int``. Verbs are imported only when used, so
``nerf-app --help`` stays fast and one broken verb cannot break the others.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import List, Optional

from .errors import NerfAppError

# verb -> (module, one-line help). Add a verb by adding a module and a line here.
VERBS = {
    "info": ("nerf_app.commands.info", "show the build, the backends available and why"),
    "process": ("nerf_app.commands.process", "photos or a video -> a posed capture (structure from motion through pycolmap, CPU)"),
    "inspect": ("nerf_app.commands.inspect", "check a capture: cameras, splits, bounds, reprojection error, frusta plot"),
    "train": ("nerf_app.commands.train", "fit a field to an input (mesh -> sdf/occupancy, scene -> nerf) into a run folder"),
    "eval": ("nerf_app.commands.eval", "evaluate a trained run; writes RUN/metrics.json"),
    "render": ("nerf_app.commands.render", "render a trained run along a camera path (orbit mp4)"),
    "view": ("nerf_app.commands.view", "live web viewer of a run (NeRF/SDF/occupancy) on a local port, for the browser or SSH"),
    "export": ("nerf_app.commands.export", "export a trained run (marching-cubes mesh)"),
    "fit-latent": ("nerf_app.commands.fit_latent", "fit a new mesh's code in a latent sdf run (decoder frozen); reports chamfer"),
    "make-scene": ("nerf_app.commands.make_scene", "generate the synthetic demo scene (known geometry) into a folder"),
    "demo": ("nerf_app.commands.demo", "the whole job on the embedded scene: train, eval, orbit video, mesh, summary"),
}


def _chosen_verb(argv: List[str]) -> Optional[str]:
    """The verb of a command line (the first token that is not an option), if it names one."""
    for token in argv:
        if not token.startswith("-"):
            return token if token in VERBS else None
    return None


def build_parser(argv: Optional[List[str]] = None) -> argparse.ArgumentParser:
    """The parser of ``argv``'s verb: only that verb's module is imported (the others get their help line)."""
    chosen = _chosen_verb(sys.argv[1:] if argv is None else list(argv))
    parser = argparse.ArgumentParser(prog="nerf-app", description="Neural radiance fields and implicit neural representations.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    parser.verb_parsers = {}
    for verb, (module_name, help_text) in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks on errors")
        if verb == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
        parser.verb_parsers[verb] = p
    return parser


def check_outputs(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """Every output flag of the verb (tagged by the ``output_*`` types of commands/arguments.py) checked
    before the verb runs: one OutputError line naming the flag, nothing touched. Returns ``(folder,
    existed)`` for the folder outputs that are new or empty (what the command puts there is removed again
    if it fails)."""
    from .commands.arguments import output_flags
    from .results import check_output, clear_outputs

    clear_outputs()
    new_folders = []
    for flag, value in output_flags(parser.verb_parsers[args.verb], args):
        check_output(value, flag, value.kind)
        if value.kind == "folder" and not os.path.lexists(value):
            top = Path(value).absolute()
            while not os.path.lexists(top.parent) and top.parent != top:
                top = top.parent  # runs/new with no runs/ yet: runs/ is this command's too
            new_folders.append((top, False))
        elif value.kind == "folder" and _empty_folder(value):
            new_folders.append((Path(value).absolute(), True))
    return new_folders


def _empty_folder(path) -> bool:
    try:
        return os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path)
    except OSError:
        return False


def _remove_made_folders(folders) -> None:
    """After a failed command (a NerfAppError: a failed write, a bad input found late), what it put in its
    output folders is removed: a folder that did not exist when the command started is removed, an empty
    one it filled is emptied again; unless it
    now holds a checkpoint (a run that trained is kept, resumable). Only real folders (no symlinks), never
    the current folder or one above it."""
    import shutil

    from .results import is_current_or_above
    for folder, existed in folders:
        if folder.is_symlink() or not folder.is_dir():
            continue
        if is_current_or_above(folder) or any((folder / "checkpoints").glob("*.pt")):
            continue
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        for entry in folder.iterdir():  # the folder was empty: everything in it is this command's
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "verb", None):
        parser.print_help()
        return 1
    new_folders = []
    try:
        new_folders = check_outputs(parser, args)
        return int(args._run(args) or 0)
    except NerfAppError as exc:
        _remove_made_folders(new_folders)  # a failed command leaves no folder it made (unless it holds a checkpoint)
        if args.debug:
            traceback.print_exc()
        print(f"nerf-app {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nerf-app {args.verb}: interrupted", file=sys.stderr)
        return 130
    finally:
        # run-folder locks last as long as the command (the OS drops them anyway when the process exits)
        run_module = sys.modules.get("nerf_app.train.run")
        if run_module is not None:
            run_module.RunLock.release_all()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
