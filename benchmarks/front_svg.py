"""Draw a study's front as a small dependency-free SVG (for the README; `pareto --html` is the
interactive view): every complete trial in grey, the front in red, the presets named; validation
loss against one cost objective (`--cost`, default FLOPs per token).

    python benchmarks/front_svg.py --study tpe@2000 --storage benchmark-study.journal -o docs/front.svg
"""

from __future__ import annotations

import argparse
from pathlib import Path

from optuna.trial import TrialState

from studies.fronts.front import front_trials
from studies.measures import OBJECTIVES
from studies.settings import read_settings
from studies.storage.backends import load_existing, open_storage

WIDTH, HEIGHT, MARGIN = 640, 400, 60
SCALES = ((1e6, "M"), (1e3, "k"), (1.0, ""))  # the x axis in the largest of these its values reach


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--cost", default="flops_per_token",
                        choices=[name for name, o in OBJECTIVES.items() if o.kind == "cost"],
                        help="the x axis (default: %(default)s)")
    args = parser.parse_args()
    study = load_existing(args.study, open_storage(args.storage, create=False))
    settings = read_settings(study)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    front = {t.number for t in front_trials(study, settings)}
    raw = [t.user_attrs[args.cost] for t in trials]
    scale, prefix = next((scale, prefix) for scale, prefix in SCALES if max(raw) >= scale or scale == 1.0)
    xs = [value / scale for value in raw]
    ys = [t.user_attrs["val_loss"] for t in trials]
    x0, x1, y0, y1 = 0.0, max(xs) * 1.1, min(ys) - 0.02, max(ys) + 0.02

    def at(x: float, y: float) -> tuple[float, float]:
        return (MARGIN + (x - x0) / (x1 - x0) * (WIDTH - 2 * MARGIN),
                HEIGHT - MARGIN - (y - y0) / (y1 - y0) * (HEIGHT - 2 * MARGIN))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" y2="{HEIGHT - MARGIN}" stroke="black"/>',
             f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" stroke="black"/>',
             f'<text x="{WIDTH / 2}" y="{HEIGHT - 20}" text-anchor="middle">{args.cost} '
             f'({prefix}{OBJECTIVES[args.cost].unit})</text>',
             f'<text x="16" y="{HEIGHT / 2}" transform="rotate(-90 16 {HEIGHT / 2})" text-anchor="middle">'
             f'validation loss ({settings.steps} steps)</text>']
    for tick in range(5):
        x, y = x0 + (x1 - x0) * tick / 4, y0 + (y1 - y0) * tick / 4
        px, _ = at(x, y0)
        _, py = at(x0, y)
        parts += [f'<text x="{px}" y="{HEIGHT - MARGIN + 16}" text-anchor="middle">{x:.2f}</text>',
                  f'<text x="{MARGIN - 6}" y="{py + 4}" text-anchor="end">{y:.2f}</text>']
    ordered = sorted((t for t in trials if t.number in front), key=lambda t: t.user_attrs[args.cost])
    points = (at(t.user_attrs[args.cost] / scale, t.user_attrs["val_loss"]) for t in ordered)
    path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
    parts.append(f'<polyline points="{path}" fill="none" stroke="crimson" stroke-dasharray="4 3"/>')
    labels: dict[tuple[float, float], list[str]] = {}  # identical results (lgpt = cgpt) share one label
    for trial, x, y in zip(trials, xs, ys):
        px, py = at(x, y)
        on_front = trial.number in front
        parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{6 if on_front else 4}" '
                     f'fill="{"crimson" if on_front else "#999"}"><title>{trial.user_attrs["summary"]}</title></circle>')
        label = trial.user_attrs.get("preset") or (trial.user_attrs["summary"] if on_front else "")
        if label:
            labels.setdefault((round(px), round(py)), []).append(label)
    for (px, py), names in labels.items():
        parts.append(f'<text x="{px + 8}" y="{py - 6}">{" = ".join(names)}</text>')
    parts.append("</svg>")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(parts))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
