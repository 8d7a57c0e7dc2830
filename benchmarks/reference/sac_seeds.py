"""CleanRL SAC's runs seed by seed, and whether the simulator stack changes them (the results issue's "one simulator").

    benchmarks/reference/cleanrl_sac.sh seeds DIR [OLD_CSV]      (or: python benchmarks/reference/sac_seeds.py DIR ...)

Reads the finished runs of `cleanrl_sac.sh run` under DIR/{env}/seed{k}/ (with DONE) and writes, into --out-dir
(default DIR):
- `cleanrl_sac_seeds.csv`: per env, seed and window, the mean training episodic return of the episodes that ended in
  the window: 5k-wide windows from 5k to 50k env steps, then the last 10k (40-50k), CleanRL's metric;
- with OLD_CSV (a reference CSV of `cleanrl_sac.sh table` measured on another stack, whose 40-50k rows name each seed's
  value in their source column), `stacks.md`: per env, the last-10k return of the old stack's seeds against this
  DIR's, their difference (this DIR minus the old) with a 95% percentile-bootstrap interval (the seeds of each stack
  resampled independently, 2000 resamples, RNG seed 0: benchmarks/aggregate.py's `difference_ci`) and the two-sided
  Mann-Whitney U test's p-value. "differs" only where the interval excludes 0.
"""

import argparse
import re
import statistics
import sys
from pathlib import Path

import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import aggregate  # noqa: E402

WINDOWS = [(start, start + 5000) for start in range(5000, 50000, 5000)] + [(40000, 50000)]
LAST_10K = (40000, 50000)


def episode_ends(run_dir: Path) -> list[tuple[int, float]]:
    """(env step at which it ended, return) of each training episode of one CleanRL run: CleanRL logs an episode at
    global_step, counted from 0, so it ended at env step global_step + 1."""
    event_dir = next(p for p in (run_dir / "runs").iterdir() if p.is_dir())
    scalars = aggregate.load_scalars(event_dir)
    episodes = scalars[scalars.tag == "charts/episodic_return"]
    return [(int(step) + 1, float(value)) for step, value in zip(episodes.step, episodes.value, strict=True)]


def per_seed_windows(root: Path) -> pd.DataFrame:
    """Columns env, seed, steps_from, steps_to, training_return: each finished run's mean per window (nan if no episode
    ended in it)."""
    rows = []
    for run_dir in sorted(root.glob("*/seed*"), key=lambda p: (p.parent.name, int(p.name[4:]))):
        if not (run_dir / "DONE").exists():
            continue
        ends = episode_ends(run_dir)
        for start, end in WINDOWS:
            inside = [r for s, r in ends if start < s <= end]
            value = statistics.mean(inside) if inside else float("nan")
            rows.append((run_dir.parent.name, int(run_dir.name[4:]), start, end, value))
    return pd.DataFrame(rows, columns=["env", "seed", "steps_from", "steps_to", "training_return"])


def old_stack_seeds(path: Path) -> dict[str, dict[int, float]]:
    """{env: {seed: last-10k return}} from a `cleanrl_sac.sh table` CSV: its 40-50k rows over several seeds say
    "(per seed over 40-50k: 1: 1028, 2: 418, ...)" in their source column."""
    table = pd.read_csv(path)
    rows = table[(table.algorithm == "cleanrl-sac") & (table.steps_from == LAST_10K[0]) & (table.steps_to == LAST_10K[1])]
    seeds = {}
    for env, source in zip(rows.env, rows.source, strict=True):
        listed = re.search(r"per seed over 40-50k: ([^)]*)\)", source)
        if listed and int(rows[rows.env == env].seeds.iloc[0]) > 1:
            seeds[env] = {int(k): float(v) for k, v in re.findall(r"(\d+): (-?[\d.]+)", listed.group(1))}
    return seeds


def stack_comparison(new: pd.DataFrame, old: dict[str, dict[int, float]]) -> str:
    """The Markdown table of stacks.md: one row per env that both stacks ran."""
    last = new[(new.steps_from == LAST_10K[0]) & (new.steps_to == LAST_10K[1])]
    lines = [
        "| env | old stack: seeds, mean ± std | this stack: seeds, mean ± std | difference [95% CI] | Mann-Whitney p | |",
        "|-|-|-|-|-|-|",
    ]
    for env in sorted(set(last.env) & set(old)):
        x, y = last[last.env == env].training_return.to_numpy(), list(old[env].values())
        low, high = aggregate.difference_ci(x, y)
        p = stats.mannwhitneyu(x, y, alternative="two-sided").pvalue
        verdict = "differs" if low > 0 or high < 0 else "no difference resolved"
        difference = f"{x.mean() - statistics.mean(y):+,.1f} [{low:+,.1f}, {high:+,.1f}]"
        lines.append(f"| {env} | {_seeds(y)} | {_seeds(list(x))} | {difference} | {p:.2f} | {verdict} |")
    return "\n".join(lines)


def _seeds(values: list[float]) -> str:
    """'n: mean ± sample std' (no std for one seed)."""
    spread = f" ± {statistics.stdev(values):,.1f}" if len(values) > 1 else ""
    return f"{len(values)}: {statistics.mean(values):,.1f}{spread}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="a cleanrl_sac.sh directory (DIR/{env}/seed{k}/)")
    parser.add_argument("old_csv", type=Path, nargs="?", help="a reference CSV of the same script on another stack")
    parser.add_argument("--out-dir", type=Path, help="where to write (default: DIR)")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        raise SystemExit(f"error: no such directory: {args.dir}")
    if args.old_csv and not args.old_csv.is_file():
        raise SystemExit(f"error: no such CSV: {args.old_csv}")
    out = args.out_dir or args.dir
    out.mkdir(parents=True, exist_ok=True)
    seeds = per_seed_windows(args.dir)
    seeds.to_csv(out / "cleanrl_sac_seeds.csv", index=False, float_format="%.1f")
    print(f"{out / 'cleanrl_sac_seeds.csv'}: {seeds.groupby('env').seed.nunique().to_dict()} finished seeds")
    if args.old_csv:
        table = stack_comparison(seeds, old_stack_seeds(args.old_csv))
        stack = args.dir / "venv" / "stack.txt"  # cleanrl_sac.sh setup's record of this DIR's stack
        stack = f" ({stack.read_text().strip()})" if stack.exists() else ""
        (out / "stacks.md").write_text(
            f"# CleanRL SAC: the stack of {args.old_csv} (old) against {args.dir.name}{stack}, training return over 40-50k "
            f"env steps\n\n{table}\n\n"
            "Difference: this stack's mean minus the old stack's, 95% percentile-bootstrap interval (each stack's seeds "
            "resampled independently, 2000 resamples, RNG seed 0); Mann-Whitney U, two-sided. Written by "
            "benchmarks/reference/sac_seeds.py.\n"
        )
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
