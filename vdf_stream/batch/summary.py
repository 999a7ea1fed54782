"""What a batch says when it ends: the closing table, and the one-line eval figures of an
item."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .driver import BatchResult


def eval_text(evaluation: dict | None) -> str:
    """An item's eval figures on one line (or the reason it could not be evaluated)."""
    if not evaluation:
        return ""
    if "error" in evaluation:
        return evaluation["error"]

    def number(name: str, digits: int) -> str:
        value = evaluation.get(name)
        return "-" if value is None else f"{value:.{digits}f}"

    return (f"NME {number('landmark_nme', 4)}, pose {number('pose_error', 2)} deg, "
            f"PSNR {number('psnr', 2)} dB, SSIM {number('ssim', 3)}")


def format_summary(result: BatchResult, report: bool = False) -> str:
    """The closing table: one row per item, then the totals."""
    headers = ["item", "state", "frames", "fps", "seconds"]
    if report:
        headers += ["NME", "pose deg", "PSNR dB"]
    headers.append("message")
    rows = []
    for item in result.items:
        state = "done" if item.state == "skipped" else item.state
        message = item.message
        if item.state == "skipped":
            message = "done earlier, same settings"
        elif item.state == "pending":
            message = "not started"
        counted = item.state in ("done", "skipped") and item.frames is not None
        row = [item.key, state, str(item.frames) if counted else "-",
               f"{item.fps:.1f}" if item.fps and item.state == "done" else "-",
               f"{item.seconds:.1f}" if item.seconds and item.state == "done" else "-"]
        if report:
            evaluation = item.evaluation or {}
            row += [_figure(evaluation.get("landmark_nme"), 4),
                    _figure(evaluation.get("pose_error"), 2),
                    _figure(evaluation.get("psnr"), 2)]
            if "error" in evaluation:
                message = (message + "; " if message else "") + evaluation["error"]
        row.append(message)
        rows.append(row)
    widths = [max(len(headers[column]), *(len(row[column]) for row in rows))
              for column in range(len(headers) - 1)]
    numeric = set(range(2, len(headers) - 1))

    def line(cells):
        parts = [cell.rjust(width) if column in numeric else cell.ljust(width)
                 for column, (cell, width) in enumerate(zip(cells, widths))]
        return "  ".join(parts + [cells[-1]]).rstrip()

    lines = [line(headers), line(["-" * width for width in widths] + ["-------"])]
    lines += [line(row) for row in rows]
    done = sum(item.state == "done" for item in result.items)
    earlier = sum(item.state == "skipped" for item in result.items)
    failed = sum(item.state == "failed" for item in result.items)
    interrupted = sum(item.state == "interrupted" for item in result.items)
    counts = [f"{done + earlier} done" + (f" ({earlier} earlier)" if earlier else "")]
    if failed:
        counts.append(f"{failed} failed")
    if interrupted:
        counts.append(f"{interrupted} interrupted")
    total = f"{len(result.items)} items: {', '.join(counts)}"
    if result.frames:
        total += (f"; {result.frames} frames protected in {result.seconds:.1f} s "
                  f"({result.fps:.1f} fps, {result.workers} workers)")
    lines += ["", total]
    return "\n".join(lines)


def _figure(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
