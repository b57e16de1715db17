import click

from repack.checkpoint import DEFAULT_SHARD_SIZE
from repack import hub
from repack.convert import convert
from repack.formats.gguf import check_gguf_type

from .common import emit_json, handle_errors, show_progress


def parse_size(text: str) -> int:
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "B": 1}
    t = text.strip().upper()
    for unit, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if t.endswith(unit):
            try:
                return int(float(t[: -len(unit)]) * factor)
            except ValueError:
                break
    try:
        return int(t)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a size like 5GB or 500MB") from None


@click.command("convert")
@click.argument("src")
@click.argument("dst")
@click.option("--to", "to", required=True, help="Target format (see `repack formats`).")
@click.option("--variant", default=None, help="Target variant, e.g. v1/v2 for auto_gptq, gemm/gemv for auto_awq.")
@click.option("--gguf-type", default=None, metavar="q4_0|q4_1|q5_0|q5_1|q8_0",
              help="With --to gguf: the block type (default: per layer, the smallest exact one).")
@click.option("--tp", default=1, show_default=True, type=click.IntRange(min=1),
              help="With --to turbomind: tensor-parallel ranks the workspace is pre-split for.")
@click.option("--from", "source_format", default=None, help="Force the source format instead of detecting it.")
@click.option("--force", is_flag=True, help="Replace DST if it exists.")
@click.option("--dry-run", is_flag=True, help="Print the plan and exactness table; write nothing.")
@click.option("--allow-lossy", is_flag=True, help="Write even if some layers change (the table says by how much).")
@click.option("--scale-dtype", type=click.Choice(["fp16", "bf16", "fp32"]), default=None, help="Cast scales (checked for rounding).")
@click.option("--shard-size", default=str(DEFAULT_SHARD_SIZE), show_default=True, help="Max bytes per shard, e.g. 2GB.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar, no table.")
@click.option("--push-to-hub", "push_to", default=None, metavar="ORG/NAME",
              help="Upload the finished folder to this Hugging Face repo (created if missing).")
@handle_errors
def convert_cmd(src, dst, to, variant, gguf_type, tp, source_format, force, dry_run, allow_lossy, scale_dtype, shard_size, as_json, quiet,
                push_to):
    """Convert SRC (a model folder) into format --to at DST.

    Exact conversions are written; if any layer would change, nothing is written and a table of
    the layers and their max abs error is printed (accept with --allow-lossy).

    \b
    Examples:
      repack convert ./model-gptq ./model-awq --to auto_awq
      repack convert ./model-awq ./model-gptq --to auto_gptq --variant v2 --dry-run
      repack convert ./model-gptq ./model-gguf --to gguf --gguf-type q4_0   # OUT/model.gguf
      repack convert ./model.Q4_0.gguf ./model-fp32 --to dense --variant fp32
      repack convert ./model-awq ./workspace --to turbomind --variant w4 --tp 2
    """
    if push_to:
        hub.check_push_target(push_to)
    if gguf_type is not None:
        if to != "gguf" or variant not in (None, gguf_type):
            raise click.UsageError("--gguf-type goes with --to gguf (and replaces --variant)")
        variant = check_gguf_type(gguf_type)
    plan = convert(src, dst, to, variant, force=force, dry_run=dry_run, allow_lossy=allow_lossy,
                   scale_dtype=scale_dtype, shard_size=parse_size(shard_size), source_format=source_format,
                   progress=show_progress(quiet, as_json), tp=tp)
    url = hub.push(dst, push_to) if push_to and not dry_run else None
    if as_json:
        emit_json(plan.to_dict() | ({"pushed_to": url} if url else {}))
        return
    if quiet:
        return
    click.echo(f"{plan.source} ({plan.source_format}/{plan.source_variant}) -> {plan.target} ({plan.target_format}/{plan.target_variant})")
    for note in plan.notes:
        click.echo(f"note: {note}")
    if dry_run:
        click.echo(plan.table())
    elif not plan.exact:
        click.echo(plan.table(only_problems=True))
    verdict = "exact" if plan.exact else f"{len(plan.by_status('lossy'))} lossy layers"
    action = "would write" if dry_run else "wrote"
    click.echo(f"{len(plan.layers)} quantized layers ({verdict}), {plan.passthrough} tensors copied; "
               f"{action} {plan.output_bytes / 1e6:.1f} MB")
    if url:
        click.echo(f"uploaded to {url}")
