"""`kdmed <command>`: thin stage commands over importable functions (each DVC stage is one of them)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kdmed.errors import KdmedError


def _params(args: argparse.Namespace):
    from kdmed.config import load_params

    return load_params(args.params)


def cmd_demo_data(args: argparse.Namespace) -> None:
    from kdmed.data.demo import generate_demo
    from kdmed.data.demo_params import demo_spec

    demo = _params(args).demo_data
    print(json.dumps(generate_demo(Path(demo.out_dir), demo_spec(demo)), indent=2))


def cmd_profile(args: argparse.Namespace) -> None:
    from kdmed.profiles import profile_settings, set_arguments

    print(" ".join(set_arguments(profile_settings(args.profile, args.params))))


def cmd_preprocess(args: argparse.Namespace) -> None:
    from kdmed.data.preprocess import preprocess_dataset

    print(json.dumps(preprocess_dataset(args.dataset, _params(args)), indent=2))


def cmd_train(args: argparse.Namespace) -> None:
    from kdmed.train import train_stage

    summary = train_stage(_params(args), args.dataset, args.method)
    if summary is not None:  # None on torchrun ranks other than 0, which write nothing
        print(json.dumps(summary, indent=2))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from kdmed.evaluate import evaluate_stage

    print(json.dumps(evaluate_stage(_params(args), args.dataset, args.method), indent=2))


def cmd_transfer(args: argparse.Namespace) -> None:
    from kdmed.evaluate import transfer_stage

    print(json.dumps(transfer_stage(_params(args), args.name), indent=2))


def cmd_ensemble(args: argparse.Namespace) -> None:
    from kdmed.ensemble import ensemble_stage

    print(json.dumps(ensemble_stage(_params(args), args.name), indent=2))


def cmd_localize(args: argparse.Namespace) -> None:
    from kdmed.localize.stage import localize_stage

    print(json.dumps(localize_stage(_params(args), args.dataset), indent=2))


def cmd_summary(args: argparse.Namespace) -> None:
    from kdmed.summary import print_summary

    print_summary(_params(args), markdown=args.markdown)


def cmd_inspect(args: argparse.Namespace) -> None:
    from kdmed.io import inspect_source

    print(json.dumps(inspect_source(args.source, series_uid=args.series), indent=2))


def cmd_plots_template(args: argparse.Namespace) -> None:
    from kdmed.plots_offline import install_template

    print(f"wrote {install_template(args.repo)}; `dvc plots show` now renders without internet")


def cmd_profile_inputs(args: argparse.Namespace) -> None:
    from kdmed.backfill_profile import backfill_profile

    params = _params(args)
    print(json.dumps(backfill_profile(params, args.dataset, args.method, replace=args.replace)))


def cmd_score(args: argparse.Namespace) -> None:
    from kdmed.score import score_source

    source = args.source[0] if len(args.source) == 1 else args.source
    report = score_source(
        source,
        args.model,
        out=args.out,
        series_uid=args.series,
        batch_size=args.batch_size,
        runtime=args.runtime,
    )
    print(json.dumps(report, indent=2, allow_nan=False))
    guard = report.get("out_of_distribution", {})
    if guard.get("warn"):
        print(f"kdmed score: warning: {guard['message']}", file=sys.stderr)


def cmd_score_archive(args: argparse.Namespace) -> None:
    from kdmed.archive import score_archive

    summary = score_archive(
        args.source,
        args.model,
        args.out,
        workers=args.workers,
        scheduler=args.scheduler,
        batch_size=args.batch_size,
        include_paths=args.include_paths,
        retry_errors=args.retry_errors,
        progress=not args.no_progress,
        runtime=args.runtime,
    )
    print(json.dumps(summary, indent=2))


def cmd_pacs(args: argparse.Namespace) -> None:
    if args.pacs_command == "list":
        from kdmed.pacs.client import Pacs

        studies = Pacs(args.url, args.timeout).studies(with_phi=args.phi)
        print(json.dumps([s.to_dict() for s in studies], indent=2))
    elif args.pacs_command == "score":
        from kdmed.pacs.score import score_study_on_pacs

        report = score_study_on_pacs(
            args.url,
            args.study,
            args.model,
            series_uid=args.series,
            store=not args.no_store,
            timeout_s=args.timeout,
        )
        print(json.dumps(report, indent=2, allow_nan=False))
    else:
        from kdmed.pacs.watch import watch

        summary = watch(args.url, args.model, args.state, interval_s=args.interval, once=args.once,
                        retry_errors=args.retry_errors, timeout_s=args.timeout)  # fmt: skip
        print(json.dumps(summary, indent=2))


def _add_pacs(add: Callable[..., argparse.ArgumentParser]) -> None:
    """`kdmed pacs list | score | watch` over DICOMweb (`kdmed.pacs`)."""
    pacs = add("pacs", cmd_pacs, "studies from a PACS over DICOMweb; results back as DICOM SEG + KOS")
    commands = pacs.add_subparsers(dest="pacs_command", required=True, metavar="PACS_COMMAND")
    listing = commands.add_parser("list", help="the studies: UID, date, description, modalities")
    scoring = commands.add_parser("score", help="score one study and store SEG + KOS back into it")
    watching = commands.add_parser("watch", help="score every new study once (restartable)")
    for command in (listing, scoring, watching):
        command.add_argument(
            "--url", required=True, help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web"
        )
        command.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default: 30)")
    listing.add_argument("--phi", action="store_true", help="also print patient names and IDs")
    for command in (scoring, watching):
        command.add_argument(
            "--model", required=True, help="checkpoint (.safetensors) written by `kdmed train`"
        )
    scoring.add_argument("--study", required=True, help="StudyInstanceUID")
    scoring.add_argument("--series", default=None, help="SeriesInstanceUID (default: kdmed's choice)")
    scoring.add_argument("--no-store", action="store_true", help="build and check the results, store nothing")
    watching.add_argument(
        "--state", default="pacs-watch.json", help="what was done (default: pacs-watch.json)"
    )
    watching.add_argument("--interval", type=float, default=30.0, help="seconds between polls (default: 30)")
    watching.add_argument("--once", action="store_true", help="one pass, then exit")
    watching.add_argument("--retry-errors", action="store_true", help="score again studies that failed")


def _add_runtime(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--runtime",
        choices=("torch", "onnx", "onnx-int8", "openvino", "openvino-bf16"),
        default="torch",
        help="torch, onnx (ONNX Runtime), onnx-int8 (after an onnx-int8 evaluate), openvino (fp32) or "
        "openvino-bf16 (bfloat16, the fastest CPU path; README: A faster CPU path); see kdmed.runtimes",
    )


def _add_scoring(add: Callable[..., argparse.ArgumentParser]) -> None:
    """`kdmed score` (one study) and `kdmed score-archive` (many, on Dask)."""
    score = add(
        "score",
        cmd_score,
        "score a study (NIfTI, DICOM folder/zip/files, 2D image) or a folder of 2D images; JSON on stdout",
    )
    score.add_argument("source", nargs="+", help="a file, a folder, a zip, or several files of one study")
    score.add_argument("--model", required=True, help="checkpoint (.safetensors) written by `kdmed train`")
    score.add_argument("--out", default=None, help="folder for anomaly maps (NPZ, input grid) and overlays")
    score.add_argument("--batch-size", type=int, default=16, help="slices per forward pass (default: 16)")
    score.add_argument("--series", default=None, help="DICOM SeriesInstanceUID (default: the largest axial)")
    _add_runtime(score)
    archive = add(
        "score-archive",
        cmd_score_archive,
        "score every study of a folder tree or manifest on Dask; one results table, resumable",
    )
    archive.add_argument("source", help="a folder of studies, or a .txt/.csv manifest of study paths")
    archive.add_argument("--model", required=True, help="checkpoint (.safetensors) written by `kdmed train`")
    archive.add_argument("--out", required=True, help="folder for results.csv (studies in it are skipped)")
    where = archive.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=2, help="local Dask worker processes (default: 2)")
    where.add_argument("--scheduler", default=None, help="a running Dask scheduler, e.g. tcp://host:8786")
    archive.add_argument("--batch-size", type=int, default=16, help="slices per forward pass (default: 16)")
    archive.add_argument(
        "--include-paths", action="store_true", help="add each study's path (may identify the patient)"
    )
    archive.add_argument("--retry-errors", action="store_true", help="score again studies that failed before")
    archive.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_runtime(archive)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdmed", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        return command

    add("demo-data", cmd_demo_data, "generate the synthetic demo studies (brain NIfTI, OCT, WBC)")
    add(
        "profile",
        cmd_profile,
        "print a named params set (profiles/*.yaml) as `dvc exp run` -S arguments, checked against --params",
    ).add_argument("profile", help="a profile file, e.g. profiles/cpu-128px.yaml")
    add("preprocess", cmd_preprocess, "index a dataset and write model-ready slices").add_argument(
        "--dataset", required=True
    )
    for name, handler, text in (
        ("train", cmd_train, "train one method on one dataset"),
        ("evaluate", cmd_evaluate, "score the test split and write metrics and plots"),
    ):
        command = add(name, handler, text)
        command.add_argument("--dataset", required=True)
        command.add_argument("--method", required=True)
    inputs = add(
        "profile-inputs",
        cmd_profile_inputs,
        "store the training-input profile (out-of-distribution guard) in a model trained before it existed",
    )
    inputs.add_argument("--dataset", required=True)
    inputs.add_argument("--method", required=True)
    inputs.add_argument("--replace", action="store_true", help="recompute a profile already stored")
    add(
        "transfer", cmd_transfer, "score another dataset's test split with a model (transfers.<name>)"
    ).add_argument("--name", required=True, help="a key under 'transfers' in the params file")
    add(
        "ensemble", cmd_ensemble, "combine the methods' test scores of a dataset or transfer into one"
    ).add_argument("--name", required=True, help="a dataset, or a key under 'transfers'")
    add(
        "localize",
        cmd_localize,
        "MKD's Captum attribution maps vs the masks, beside the discrepancy, STPM and RD4AD maps",
    ).add_argument("--dataset", required=True)
    summary = add("summary", cmd_summary, "print the metrics table and where models and plots are")
    summary.add_argument(
        "--markdown", action="store_true", help="a Markdown table with intervals and BMAD's numbers (README)"
    )
    inspect = add("inspect", cmd_inspect, "describe a study (NIfTI, DICOM folder/zip/file, 2D image) as JSON")
    inspect.add_argument("source")
    inspect.add_argument(
        "--series", default=None, help="SeriesInstanceUID to choose when several are present"
    )
    _add_scoring(add)
    _add_pacs(add)
    add(
        "plots-template",
        cmd_plots_template,
        "write .dvc/plots_offline.html (Vega libraries inlined) and make `dvc plots show` use it",
    ).add_argument("--repo", default=".", help="DVC project root (default: the current folder)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        args.handler(args)
    except KdmedError as error:
        print(f"kdmed {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
