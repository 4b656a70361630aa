"""`stoplib ...`: headless runs with the same store and configs as the notebooks.

    stoplib reproduce [--scale small] [--model toy] [--engine hf] [--only 00]
                                                     run the notebook suite with papermill
    stoplib toy [--scale small] [--out DIR]          build (train) the built-in organism into the store
    stoplib label [--scale small] [--workers 2]       dataset construction (MC soft labels)
    stoplib train [--variant stop|stop_probe|stop_hard]
                                                     train a STOP variant on the labels
    accelerate launch --num_processes N [--cpu] -m stoplib.cli train ...
                                                     the same training, data parallel over N processes
    stoplib bank                                     the rollout bank of the evaluation problems
    stoplib label|bank --shard i/n                   only problems i, i+n, i+2n, ... (one store entry per shard)
    stoplib merge label|bank --shards n              assemble n finished shards into the one-process result
    stoplib models                                   the model presets
    stoplib info                                     provenance: versions, device, commit

label / train / bank use the same store and configs as the notebooks (results/<stage>/<hash>/) and
resume after an interruption; options: --scale, --model, --engine, --seed, --results-root,
--benchmark, --train-problems. --model takes a preset name (toy, smollm2-135m, ...), a local
model directory or a Hugging Face id.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .config import SCALES, repo_root


#: Organisms whose weights ship with the package (stoplib/toy/weights/<name>).
SHIPPED_ORGANISMS = ("small", "long")

def notebook_paths(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks, in order (``only`` filters by number prefix, e.g. "00")."""
    paths = sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if only:
        paths = [p for p in paths if any(p.name.startswith(o) for o in only)]
    if not paths:
        raise FileNotFoundError(f"no notebooks matched {only!r} in {repo_root() / 'notebooks'}")
    return paths


def skip_reason(notebook: Path, parameters: dict) -> str | None:
    """Why a notebook does not apply to the run's model, or None. A notebook that needs something
    of the model's preset says so in its metadata: ``{"stoplib": {"requires": {"preset": field,
    "parameter": name}}}`` (it runs when the preset's field is set or the parameter is given)."""
    from .presets import get_preset

    needs = json.loads(notebook.read_text(encoding="utf-8"))["metadata"].get("stoplib", {}).get("requires")
    if not needs or parameters.get(needs["parameter"]):
        return None
    model = parameters.get("model", "toy")
    if getattr(get_preset(model), needs["preset"]):
        return None
    return (f"model {model!r} has no {needs['preset']} in its preset; set the notebook parameter {needs['parameter']} "
            "or use a model that has one (e.g. toy-long)")


def run_notebooks(
    scale: str = "small",
    *,
    results_root: str | Path = "results",
    figures_dir: str | Path = "figures",
    only: list[str] | None = None,
    extra: dict | None = None,
    log_output: bool = False,
) -> list[Path]:
    """Execute notebooks with papermill; executed copies go to ``results_root/notebooks/<run>/``."""
    import papermill as pm

    from .config import run_name

    root = repo_root()
    results_root, figures_dir = Path(results_root), Path(figures_dir)
    if not results_root.is_absolute():
        results_root = root / results_root
    if not figures_dir.is_absolute():
        figures_dir = root / figures_dir
    extra = dict(extra or {})
    out_dir = results_root / "notebooks" / run_name(extra.get("model", "toy"), extra.get("engine", "hf"))
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs, minutes = [], {}
    for nb in notebook_paths(only):
        reason = skip_reason(nb, extra)
        if reason:
            print(f"[stoplib] skipping {nb.name}: {reason}", flush=True)
            continue
        params = dict(scale=scale, results_root=str(results_root), figures_dir=str(figures_dir), **extra)
        out = out_dir / nb.name
        start = time.time()
        print(f"[stoplib] running {nb.name} (scale={scale}) ...", flush=True)
        pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name="python3",
                            cwd=str(root), progress_bar=False, log_output=log_output)
        minutes[nb.stem] = (time.time() - start) / 60
        print(f"[stoplib] {nb.name} done in {minutes[nb.stem] * 60:.0f}s -> {out}", flush=True)
        outputs.append(out)
    record_times(minutes, scale, results_root, out_dir.name)
    return outputs


def record_times(minutes: dict[str, float], scale: str, results_root: Path, run: str) -> None:
    """Print each notebook's wall time and keep it in ``results/latest/<run>/reproduce.json``
    (notebooks run earlier at the same scale keep their times)."""
    from .store import record_metrics

    path = results_root / "latest" / run / "reproduce.json"
    earlier = json.loads(path.read_text(encoding="utf-8"))["metrics"] if path.exists() else {}
    merged = dict(earlier.get("minutes", {})) if earlier.get("scale") == scale else {}
    merged.update({name: round(value, 2) for name, value in minutes.items()})
    record_metrics("reproduce", {"scale": scale, "minutes": merged, "total_minutes": round(sum(merged.values()), 2)},
                   results_root, run)
    parts = ", ".join(f"{name[:2]} {value:.1f}" for name, value in sorted(merged.items()))
    print(f"[stoplib] minutes per notebook ({scale}): {parts}; total {sum(merged.values()):.1f}", flush=True)


def _cmd_reproduce(args: argparse.Namespace) -> None:
    from .config import resolve

    resolve(args.scale, args.model, args.engine, results_root=str(_absolute(args.results_root)))  # fail fast
    run_notebooks(args.scale, results_root=args.results_root, figures_dir=args.figures_dir, only=args.only,
                  extra={"model": args.model, "engine": args.engine})


def _absolute(path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else repo_root() / path


def _cmd_models(args: argparse.Namespace) -> None:
    from .presets import PRESETS

    for name, preset in PRESETS.items():
        print(f"{name:45s} {preset.description}")


def _cmd_toy(args: argparse.Namespace) -> None:
    """Train the organism into the store (default), a directory (--out), or over the shipped
    weights (--replace-shipped: "small", what `make reproduce` uses, or "long")."""
    from .config import project_path
    from .toy import organism

    if args.replace_shipped:
        if args.out or args.scale not in SHIPPED_ORGANISMS:
            raise SystemExit(f"--replace-shipped rebuilds a shipped organism ({', '.join(SHIPPED_ORGANISMS)}); "
                             "it takes no --out")
        out = organism.WEIGHTS_DIR / args.scale
    else:
        out = Path(args.out) if args.out else Path(project_path(args.results_root)) / "organism" / args.scale
    print(organism.build_organism(out, organism.ORGANISM_PRESETS[args.scale], progress=not args.quiet))


def _config(args: argparse.Namespace):
    from .config import resolve

    overrides: dict = {name: getattr(args, name) for name in ("benchmark", "train_problems") if getattr(args, name, None)}
    for name in ("workers", "tensor_parallel_size", "pipeline_parallel_size"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    return resolve(args.scale, args.model, args.engine, args.seed, args.results_root, **overrides)


def _shard(args: argparse.Namespace):
    from .stages import parse_shard

    return None if args.shard is None else parse_shard(args.shard)


def _print_labels(directory: Path, card: dict) -> None:
    print(json.dumps({"directory": str(directory), **{k: card[k] for k in ("problems", "problems_kept", "prefixes",
                                                                           "prefixes_train", "seconds")}}, indent=2))


def _cmd_label(args: argparse.Namespace) -> None:
    from .stages import labels_stage

    shard = _shard(args)
    _print_labels(*labels_stage(_config(args), force=args.force, progress=not args.quiet, shard=shard))


def _cmd_train(args: argparse.Namespace) -> None:
    from .stages import stop_stage

    from .train import process_rank

    best, summary = stop_stage(_config(args), args.variant, force=args.force, progress=not args.quiet)
    if process_rank()[0] == 0:  # under `accelerate launch`, one report
        print(json.dumps({"checkpoint": str(best), "best_epoch": summary["best_epoch"]}, indent=2))


def _cmd_bank(args: argparse.Namespace) -> None:
    from .stages import bank_stage

    shard = _shard(args)
    bank = bank_stage(_config(args), force=args.force, progress=not args.quiet, shard=shard)
    print(json.dumps({"problems": len(bank.problems), "paths": bank.n_paths}, indent=2))


def _cmd_merge(args: argparse.Namespace) -> None:
    from .stages import merge_bank, merge_labels

    config = _config(args)
    if args.stage == "label":
        _print_labels(*merge_labels(config, args.shards, force=args.force))
    else:
        bank = merge_bank(config, args.shards, force=args.force)
        print(json.dumps({"problems": len(bank.problems), "paths": bank.n_paths}, indent=2))


def _cmd_info(args: argparse.Namespace) -> None:
    from .store import provenance

    print(json.dumps(provenance(), indent=2, sort_keys=True))


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = argparse.ArgumentParser(prog="stoplib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser("reproduce", help="run the notebook suite with papermill")
    rep.add_argument("--scale", choices=SCALES, default="small")
    rep.add_argument("--model", default="toy", help="a preset (toy, smollm2-135m, ...), a model directory or a hub id")
    rep.add_argument("--engine", choices=("hf", "vllm"), default="hf")
    rep.add_argument("--results-root", default="results")
    rep.add_argument("--figures-dir", default="figures")
    rep.add_argument("--only", nargs="*", help="notebook number prefixes, e.g. 00 03")
    rep.set_defaults(func=_cmd_reproduce)

    toy = sub.add_parser("toy", help="build (train) the built-in reasoning organism")
    toy.add_argument("--scale", choices=("tiny", *SHIPPED_ORGANISMS), default="small",
                     help="tiny: a smoke test; small: the default organism; long: 24-step paths + multiple choice")
    toy.add_argument("--out", help="output directory (default: <results-root>/organism/<scale>)")
    toy.add_argument("--results-root", default="results")
    toy.add_argument("--replace-shipped", action="store_true",
                     help="overwrite the shipped weights (stoplib/toy/weights/<scale>) with the rebuilt organism")
    toy.add_argument("--quiet", action="store_true")
    toy.set_defaults(func=_cmd_toy)

    for name, func, help_text in (("label", _cmd_label, "dataset construction: MC soft labels"),
                                  ("train", _cmd_train, "train a STOP variant on the labels"),
                                  ("bank", _cmd_bank, "generate the rollout bank"),
                                  ("merge", _cmd_merge, "assemble the finished shards of label or bank")):
        p = sub.add_parser(name, help=help_text)
        if name == "merge":
            p.add_argument("stage", choices=("label", "bank"), help="the sharded stage")
            p.add_argument("--shards", type=int, required=True, help="n, the number of shards (i/n) that were run")
        p.add_argument("--scale", choices=SCALES, default="small")
        p.add_argument("--model", default="toy", help="a preset (toy, smollm2-135m, ...), a model directory or a hub id")
        p.add_argument("--engine", choices=("hf", "vllm"), default="hf")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--results-root", default="results")
        p.add_argument("--benchmark", default=None, help="evaluation problems: a generated task, benchmark or file "
                       "(default: the model preset's)")
        p.add_argument("--train-problems", default=None, help="problems to label: a generated task or a file "
                       "(default: the model preset's)")
        p.add_argument("--force", action="store_true", help="recompute even if the store has it")
        p.add_argument("--quiet", action="store_true")
        if name in ("label", "bank"):
            p.add_argument("--shard", default=None, metavar="I/N",
                           help="build only problems I, I+N, I+2N, ... (0 <= I < N) into a store entry of its own; "
                           "`stoplib merge` assembles the N shards")
        if name in ("label", "bank"):
            p.add_argument("--tensor-parallel-size", type=int, default=None,
                           help="--engine vllm: GPUs per model (vLLM's tensor_parallel_size)")
            p.add_argument("--pipeline-parallel-size", type=int, default=None,
                           help="--engine vllm: pipeline stages (vLLM's pipeline_parallel_size)")
        if name == "label":
            p.add_argument("--workers", type=int, default=None,
                           help="processes sampling in parallel (default: 2 for the organism on CPU, else 1)")
        if name == "train":
            p.add_argument("--variant", choices=("stop", "stop_probe", "stop_hard"), default="stop")
        p.set_defaults(func=func)

    models = sub.add_parser("models", help="list the model presets")
    models.set_defaults(func=_cmd_models)

    info = sub.add_parser("info", help="print provenance (versions, device, git commit)")
    info.set_defaults(func=_cmd_info)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except USER_ERRORS as err:  # a bad input: its message, without a traceback ($STOPLIB_TRACEBACK=1 shows it)
        if os.environ.get("STOPLIB_TRACEBACK"):
            raise
        parser.exit(2, f"stoplib {args.command}: error: {err}\n")


#: Errors that describe a bad input (a parameter, a file, a model): the CLI prints their message.
USER_ERRORS = (ValueError, OSError, ImportError)


if __name__ == "__main__":
    main(sys.argv[1:])
