"""``python -m covidviz {train,evaluate,predict,bench}``: the command line for ML engineers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from covidviz.model.forward_pass import ENGINES
from covidviz.model.sidecar import ARCHITECTURE_NAMES
from covidviz.paths import DEFAULT_DATA_DIR, WEIGHTS_DIR
from covidviz.tools.cli_audit import add_parsers as add_audit_parsers
from covidviz.tools.cli_decision import add_parsers as add_decision_parsers
from covidviz.tools.cli_explain import add_parsers as add_explain_parsers
from covidviz.tools.cli_pacs import add_parsers as add_pacs_parsers
from covidviz.tools.cli_site import add_parsers as add_site_parsers


def _train(args: argparse.Namespace) -> int:
    from covidviz.training.config import TrainConfig
    from covidviz.training.train import train
    cfg = TrainConfig(data_dir=args.data, run_dir=args.run, size=args.size, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, patience=args.patience, seed=args.seed,
                      split_seed=args.split_seed, init=args.init, export_dir=args.export, limit=args.limit,
                      threads=args.threads, fast={"auto": None, "fp32": False, "bf16": True}[args.precision],
                      stop_after=args.stop_after, segmenter_dir=args.lungs, previous_split=args.previous_split,
                      radiologist_labels=not args.report_labels, epoch_images=args.epoch_images,
                      source_power=args.source_power, adult_pneumonia=args.adult_pneumonia,
                      acquisition=args.acquisition, arch=args.arch,
                      consistency=args.consistency, outside_lungs=args.outside_lungs,
                      twin_transforms=tuple(args.twin_transforms.split(",")) if args.twin_transforms else ())
    if args.export_only:
        from covidviz.training.export import export_checkpoint
        print(f"exported {Path(args.run) / 'best.pt'} to {export_checkpoint(cfg)}")
        return 0
    best = train(cfg, resume=args.resume)
    print(f"best checkpoint: {best}")
    return 0


def _average_weights(args: argparse.Namespace) -> int:
    from covidviz.training.weight_average import write_average
    print(f"wrote {write_average(args.models, args.out, args.shares)}: read it as a run checkpoint "
          "(train --init, scripts/recipe_ablation.py FILE:ARCH:SIZE)")
    return 0


def _compare_train(args: argparse.Namespace) -> int:
    from covidviz.tools.compare_runs import compare_train
    for arch in args.arch:
        for fold in args.fold or [None]:
            print(f"evaluation artifacts: {compare_train(args.data, args.runs, arch, fold, threads=args.threads)}/eval")
    return 0


def _compare_build(args: argparse.Namespace) -> int:
    from covidviz.tools.compare_build import build_comparison
    print(f"wrote {build_comparison(args.runs, args.weights, repeats=args.repeats, readme=args.readme, committed=args.committed)}")
    return 0


def _train_lungs(args: argparse.Namespace) -> int:
    from covidviz.training.lungs import LungTrainConfig, train_lungs
    cfg = LungTrainConfig(data_dir=args.data, run_dir=args.run, epochs=args.epochs, batch_size=args.batch_size,
                          lr=args.lr, seed=args.seed, threads=args.threads, limit=args.limit, export_dir=args.export,
                          acquisition=args.acquisition)
    sidecar = train_lungs(cfg, resume=args.resume)
    if sidecar:
        test = sidecar["test"]
        print(f"held-out masks: n={test['n']} Dice {test['dice_mean']:.4f} IoU {test['iou_mean']:.4f}; "
              f"{sidecar['cpu_ms_per_image_256px']} ms per 256 px image on this CPU")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from covidviz.evaluation.artifacts.evaluate import evaluate, headline
    print(headline(evaluate(args.data, args.weights, n_boot=args.bootstrap, previous=args.previous)))
    return 0


def _facts(args: argparse.Namespace) -> int:
    import json

    from covidviz.evaluation.documents.facts import FACTS_BLOCK, load_artifacts, readme_block
    from covidviz.evaluation.documents.model_card import render_model_card
    from covidviz.model.openvino_engine import INT8_RECORD, INT8_SUBDIR
    weights = Path(args.weights)
    sidecar, metrics, lungs = load_artifacts(weights)
    (weights / "MODEL_CARD.md").write_text(render_model_card(sidecar, metrics, lungs))
    readme = Path(args.readme)
    text = FACTS_BLOCK.replace(readme.read_text(), readme_block(sidecar, metrics, lungs))
    if (weights / "comparison" / "comparison.json").is_file():
        from covidviz.evaluation.artifacts.saved import load_comparison
        from covidviz.evaluation.documents.comparison_facts import COMPARISON_BLOCK, comparison_block
        text = COMPARISON_BLOCK.replace(text, comparison_block(load_comparison(weights)))
    record = weights / INT8_SUBDIR / INT8_RECORD
    if record.is_file():  # its rows say whether they read the shipped rule, which fit-decision may have moved
        from covidviz.evaluation.documents.int8_facts import INT8_BLOCK, int8_block
        from covidviz.model.decision import rule_from_sidecar
        text = INT8_BLOCK.replace(text, int8_block(json.loads(record.read_text()), rule_from_sidecar(sidecar)))
    readme.write_text(text)
    print(f"rewrote {weights / 'MODEL_CARD.md'} and the generated block of {readme}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from covidviz.tools.predict import run_predict
    return run_predict(args.paths, args.weights, args.json, args.fast, sys.stdout, engine=args.engine,
                       dicom_out=args.dicom_out)


def _bench_decode(args: argparse.Namespace) -> int:
    from covidviz.tools.bench_decode import run_bench_decode
    return run_bench_decode(args.repeats, sys.stdout)


def _quantise(args: argparse.Namespace) -> int:
    from covidviz.evaluation.documents.int8_facts import INT8_BLOCK, int8_block
    from covidviz.tools.quantise import measure_here, quantise
    if args.measure:
        record = measure_here(Path(args.weights), Path(args.data))
    else:
        record = quantise(Path(args.weights), Path(args.data), args.calibration, tuple(args.ignore),
                          not args.fast_bias_correction, args.preset)
    from covidviz.model.decision import rule_from_sidecar
    from covidviz.verified import read_sidecar
    readme = Path(args.readme)
    rule = rule_from_sidecar(read_sidecar(Path(args.weights)))
    readme.write_text(INT8_BLOCK.replace(readme.read_text(), int8_block(record, rule)))
    print(f"wrote {Path(args.weights) / 'int8'} and the INT8 block of {readme}")
    return 0


def _engines(args: argparse.Namespace) -> int:
    """Choose the engines here (every export checked against PyTorch, ``auto`` timing them) and remember the
    choice, so that the dashboard serves the same without loading torch."""
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)  # every engine's thread count (covidviz.model.forward_pass.torch_threads)
    from covidviz.model.predictor import Predictor
    predictor = Predictor(args.weights, engine=args.engine)
    print(f"classifier: {predictor.engine_note}\n{predictor.segmenter_note}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from covidviz.tools.bench import run_bench
    return run_bench(args.weights, args.data, args.repeats, sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m covidviz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train or fine-tune the DenseNet on the pool (resumable)")
    t.add_argument("--data", default=str(DEFAULT_DATA_DIR), help="folder with metadata.csv (default ../shared/cxr)")
    t.add_argument("--run", default="runs/train", help="checkpoint folder (last.pt, best.pt, history.json)")
    t.add_argument("--size", type=int, default=224, help="input size in px")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (one-cycle)")
    t.add_argument("--patience", type=int, default=8, help="early stop after this many epochs without improvement")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--split-seed", type=int, default=42)
    t.add_argument("--init", help="fine-tune from a checkpoint: run .pt, weights folder or torchvision .pth")
    t.add_argument("--export", help=f"write the best model here as safetensors + sidecar (e.g. {WEIGHTS_DIR.name}/)")
    t.add_argument("--resume", action="store_true", help="continue from <run>/last.pt")
    t.add_argument("--export-only", action="store_true",
                   help="write <run>/best.pt to --export as it stands, without training: for a checkpoint made "
                        "without epochs (average-weights, scripts/refit_head.py)")
    t.add_argument("--limit", type=int, help="images per split (smoke tests)")
    t.add_argument("--threads", type=int, help="torch CPU threads")
    t.add_argument("--stop-after", type=int, help="end after this epoch (resume later with --resume)")
    t.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto: bf16 autocast only where the CPU runs bf16 natively and a measured step is faster")
    t.add_argument("--lungs", help="a weights folder holding lungs/: train on lung fields (e.g. weights)")
    t.add_argument("--previous-split", help="keep this split.csv's patient assignments; split only new patients")
    t.add_argument("--report-labels", action="store_true",
                   help="keep NIH's report-mined labels even where RSNA radiologists re-read the film")
    t.add_argument("--epoch-images", type=int, help="images sampled per epoch (default: the training set's size)")
    t.add_argument("--source-power", type=float, default=0.5,
                   help="within a class, sample sources in proportion to count**power (0: every source equally)")
    t.add_argument("--adult-pneumonia", type=float, metavar="SHARE",
                   help="share of the pneumonia class's draws from adult sources (NIH, ieee8023), the rest from the "
                        "children's (Kermany); default: by source size like the other classes (about 0.44 here)")
    t.add_argument("--acquisition", type=float, default=0.0,
                   help="share of training images passed through one acquisition transform (grain, vendor curves, "
                        "edge enhancement, low resolution and JPEG, collimation and text, digitised film)")
    t.add_argument("--consistency", type=float, default=0.0,
                   help="weight of a term asking each film and its twin through an acquisition transform for the same "
                        "answer (Jensen-Shannon, as AugMix; 0: off). Each step then reads twice the images")
    t.add_argument("--twin-transforms",
                   help="comma-separated acquisition transforms the consistency term's twins are drawn from, e.g. "
                        "grain_noise,digitised_film (default: all of them)")
    t.add_argument("--outside-lungs", type=float, default=0.0,
                   help="weight of a penalty on the share of the class evidence (the maps the page draws) outside "
                        "the lung mask (right for the right reasons; needs --lungs; 0: off)")
    t.add_argument("--arch", default="densenet121", choices=ARCHITECTURE_NAMES,
                   help="the backbone (recorded in the sidecar; loading refuses weights of another one)")
    t.set_defaults(func=_train)

    a = sub.add_parser("average-weights", help="average fine-tunes of one model into one (a model soup: one "
                       "model's cost per image) and write it as a run checkpoint")
    a.add_argument("models", nargs="+", help="run checkpoints (best.pt) or shipped weights folders, one architecture")
    a.add_argument("--out", required=True, help="the averaged run checkpoint to write, e.g. ~/covidviz-runs/soup/best.pt")
    a.add_argument("--shares", type=float, nargs="+", help="one positive weight per model (default: equal)")
    a.set_defaults(func=_average_weights)

    c = sub.add_parser("compare-train", help="train comparison backbones or cross-validation folds on the shared "
                       "reduced recipe and evaluate them (resumable; finished runs are skipped)")
    c.add_argument("--data", default=str(DEFAULT_DATA_DIR))
    c.add_argument("--runs", default=str(Path.home() / "covidviz-runs" / "compare"),
                   help="folder for all comparison runs and their shared prepared images")
    c.add_argument("--arch", nargs="+", default=["densenet121"], choices=ARCHITECTURE_NAMES)
    c.add_argument("--fold", nargs="+", type=int, help="cross-validation folds to run (0-4); default: none, "
                   "train on the shipped model's split")
    c.add_argument("--threads", type=int)
    c.set_defaults(func=_compare_train)

    cb = sub.add_parser("compare-build", help="gather finished comparison runs into weights/comparison/ "
                        "(artifacts, small weights, speed measured here) for the Model comparison page")
    cb.add_argument("--runs", default=str(Path.home() / "covidviz-runs" / "compare"))
    cb.add_argument("--weights", default=str(WEIGHTS_DIR))
    cb.add_argument("--repeats", type=int, default=30, help="timing rounds for latency (throughput: a fifth)")
    cb.add_argument("--committed", action="store_true",
                    help="re-measure the runs already in weights/comparison/ against the shipped model (after "
                         "shipping a new one; no run folders needed)")
    cb.add_argument("--readme", default=str(WEIGHTS_DIR.parent / "README.md"),
                    help="rewrite this README's generated comparison block")
    cb.set_defaults(func=_compare_build)

    s = sub.add_parser("train-lungs", help="train the lung segmenter on lungs/ masks (resumable)")
    s.add_argument("--data", default=str(DEFAULT_DATA_DIR))
    s.add_argument("--run", default="runs/lungs")
    s.add_argument("--epochs", type=int, default=30)
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--lr", type=float, default=2e-3)
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--threads", type=int)
    s.add_argument("--limit", type=int, help="masks per split (smoke tests)")
    s.add_argument("--resume", action="store_true")
    s.add_argument("--export", help="write <export>/lungs (safetensors + sidecar), e.g. weights")
    s.add_argument("--acquisition", type=float, default=0.0,
                   help="share of training films through one acquisition transform (grain, vendor curves, digitised "
                        "film...), so the lungs are found however the film was made (default 0)")
    s.set_defaults(func=_train_lungs)

    e = sub.add_parser("evaluate", help="write weights/eval/: predictions, metrics, calibration")
    e.add_argument("--data", default=str(DEFAULT_DATA_DIR))
    e.add_argument("--weights", default=str(WEIGHTS_DIR))
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    e.add_argument("--previous", help="an earlier model's weights folder (e.g. weights/history/v1): its headline "
                                      "measures on the same rows, for the side-by-side view")
    e.set_defaults(func=_evaluate)

    f = sub.add_parser("facts", help="regenerate MODEL_CARD.md and the README's facts block from the artifacts")
    f.add_argument("--weights", default=str(WEIGHTS_DIR))
    f.add_argument("--readme", default=str(WEIGHTS_DIR.parent / "README.md"))
    f.set_defaults(func=_facts)

    p = sub.add_parser("predict", help="classify X-ray files or folders")
    p.add_argument("paths", nargs="+", help="PNG, JPEG or DICOM files, or folders of them")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--weights", default=str(WEIGHTS_DIR))
    p.add_argument("--fast", action="store_true",
                   help="bf16 autocast where the CPU runs bf16 natively (ignored, with a note, where it does not)")
    p.add_argument("--engine", choices=ENGINES,
                   help="where the forward pass runs (default: COVIDVIZ_ENGINE, else auto: measure the exact engines "
                        "here and keep the fastest; they give the same probabilities to 1e-5). openvino-int8 is "
                        "approximate: its measured agreement with fp32 is in weights/int8/quantisation.json")
    p.add_argument("--dicom-out", metavar="DIR",
                   help="for each DICOM input, write a Secondary Capture of its heatmap and a Structured Report "
                        "of its result into DIR (same study as the input, new series)")
    p.set_defaults(func=_predict)

    b = sub.add_parser("bench", help="latency and throughput of prediction on this machine")
    b.add_argument("--weights", default=str(WEIGHTS_DIR))
    b.add_argument("--data", default=str(DEFAULT_DATA_DIR), help="real X-rays to time (examples/xrays if absent)")
    b.add_argument("--repeats", type=int, default=20)
    b.set_defaults(func=_bench)
    en = sub.add_parser("engines", help="choose the engines on this machine and remember the choice (the "
                                        "dashboard then serves from it without torch)")
    en.add_argument("--weights", default=str(WEIGHTS_DIR))
    en.add_argument("--engine", choices=ENGINES, default=None, help="default COVIDVIZ_ENGINE, else auto")
    en.add_argument("--threads", type=int, default=None, help="threads every engine runs on (default torch's)")
    en.set_defaults(func=_engines)
    q = sub.add_parser("quantise", help="the INT8 OpenVINO graph (NNCF, calibrated on validation films) and its "
                                        "measured agreement with fp32, into WEIGHTS/int8")
    q.add_argument("--weights", default=str(WEIGHTS_DIR))
    q.add_argument("--data", default=str(DEFAULT_DATA_DIR))
    q.add_argument("--calibration", type=int, default=300, help="validation films to calibrate on")
    q.add_argument("--ignore", action="append", default=[], metavar="REGEX",
                   help="keep layers whose names match in fp32 (NNCF ignored scope; repeatable)")
    q.add_argument("--fast-bias-correction", action="store_true", help="NNCF's fast bias correction instead of "
                   "the full one (quicker, usually less accurate)")
    q.add_argument("--preset", choices=("mixed", "performance"), default="mixed")
    q.add_argument("--measure", action="store_true", help="keep the shipped graph and measure its agreement on "
                   "this CPU's int8 kernels (VNNI, AVX2 ...), added to its record beside the others")
    q.add_argument("--readme", default="README.md", help="whose INT8 agreement block to rewrite")
    q.set_defaults(func=_quantise)
    d = sub.add_parser("bench-decode", help="what decoding uploads in an isolated worker process costs here")
    d.add_argument("--repeats", type=int, default=10)
    d.set_defaults(func=_bench_decode)
    add_audit_parsers(sub)
    add_decision_parsers(sub)
    add_explain_parsers(sub)
    add_pacs_parsers(sub)
    add_site_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
