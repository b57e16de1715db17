import sys

import click

from .common import emit_json, handle_errors, show_progress


def _ms(text: str) -> tuple[int, ...]:
    try:
        ms = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a list of row counts like 1,16,128") from None
    if not ms or min(ms) < 1:
        raise click.BadParameter("row counts must be positive")
    return ms


@click.command("verify")
@click.argument("a")
@click.argument("b")
@click.option("--against", default=None, help="A float model: report each side's quantization error (SQNR).")
@click.option("--backend", type=click.Choice(["auto", "reference", "triton"]), default="auto", show_default=True,
              help="GEMM backend: Triton on CUDA, torch reference anywhere.")
@click.option("--dtype", type=click.Choice(["fp16", "bf16", "fp32"]), default="fp16", show_default=True,
              help="Activation dtype.")
@click.option("--m", "ms", default=None, help="Activation row counts, comma-separated (default: 1,16,128).")
@click.option("--seed", default=0, show_default=True, help="Seed of the random activations.")
@click.option("--rtol", type=float, default=None, help="Allowed GEMM relative difference (default: kernel tolerance).")
@click.option("--weight-atol", type=float, default=0.0, show_default=True,
              help="Allowed max abs difference of dequantized weights (0: the same function).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", is_flag=True, help="Print only the verdict.")
@handle_errors
def verify_cmd(a, b, against, backend, dtype, ms, seed, rtol, weight_atol, as_json, quiet):
    """Check that checkpoints A and B compute the same function, layer by layer.

    Exit status 0 when every layer agrees, 1 on a mismatch (the first failing layer is named).

    \b
    Examples:
      repack verify ./model-gptq ./model-awq
      repack verify ./model-gptq ./model-awq --against ./model-fp16 --json
    """
    from repack.verify import DEFAULT_MS, verify  # torch: imported only by the commands that run it

    ms = _ms(ms) if ms else DEFAULT_MS
    report = verify(a, b, against=against, backend=backend, dtype=dtype, ms=ms, seed=seed,
                    rtol=rtol, weight_atol=weight_atol, progress=show_progress(quiet, as_json))
    if as_json:
        emit_json(report.to_dict())
    else:
        if not quiet:
            click.echo(f"A: {report.a} ({report.a_format})\nB: {report.b} ({report.b_format})\n"
                       f"backend {report.backend}, {report.dtype} activations, M = {','.join(map(str, ms))}")
            click.echo(report.table())
        click.echo(report.verdict())
    sys.exit(0 if report.ok else 1)
