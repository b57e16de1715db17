import click

from repack import hub
from repack.quantize import METHODS
from repack.quantize.arch import ARCHS

from .common import emit_json, handle_errors

HELP = f"""Quantize the float model MODEL (folder, hub id, or any checkpoint repack reads) into OUT,
    one decoder block at a time. Each block prints its time and its layers' mean relative output
    error on the calibration inputs, next to round-to-nearest's.

    Architectures (config.json model_type): {", ".join(t for a in ARCHS for t in a.model_types)}.

    \b
    Examples:
      repack quantize ./model-fp16 ./model-gptq --method gptq --bits 4 --group-size 128
      repack quantize ./model-fp16 ./model-gptq-desc --method gptq --act-order --dynamic-groups
      repack quantize ./model-fp16 ./model-awq --method awq --asym --to auto_awq --calib wiki.txt
      repack quantize ./model-fp16 ./model-awq --method awq --calib hf://datasets/ORG/NAME/train.jsonl
      repack quantize ./model-fp16 ./model-rtn --method rtn --to compressed_tensors
    """


@click.command("quantize", help=HELP)
@click.argument("model")
@click.argument("out")
@click.option("--method", type=click.Choice(METHODS), default="gptq", show_default=True)
@click.option("--bits", type=click.Choice(["2", "3", "4", "8"]), default="4", show_default=True)
@click.option("--group-size", type=int, default=128, show_default=True, help="Input channels per group (-1: per channel).")
@click.option("--sym/--asym", default=True, show_default=True, help="Symmetric (fixed zero) or asymmetric groups.")
@click.option("--act-order/--no-act-order", default=None,
              help="GPTQ: quantize columns by decreasing activation energy (default; --no-act-order: natural order).")
@click.option("--static-groups/--dynamic-groups", default=None,
              help="GPTQ act-order: groups fixed up front and sequential on disk (default), or --dynamic-groups: "
                   "set as the order reaches them, a reordering g_idx on disk (auto_gptq, compressed_tensors, marlin only).")
@click.option("--no-true-sequential", is_flag=True, help="GPTQ: capture all of a block's inputs before quantizing it.")
@click.option("--damp", type=float, default=0.01, show_default=True, help="GPTQ: Hessian damping, a fraction of its mean diagonal.")
@click.option("--clip-search/--no-clip-search", default=True, show_default=True,
              help="GPTQ: shrink each group's range to the factor (1.00..0.21) with the least rounding error "
                   "(--no-clip-search: min/max ranges, as AutoGPTQ/GPTQModel by default).")
@click.option("--calib", default="self", show_default=True,
              help="'self' (token ids sampled from the model: no data needed), a text file, or a hub dataset "
                   "file hf://datasets/ORG/NAME[@REV]/PATH; .jsonl: each line's 'text' field, .parquet: the "
                   "'text' column (needs pyarrow), else UTF-8 text.")
@click.option("--nsamples", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--seqlen", type=click.IntRange(min=2), default=512, show_default=True)
@click.option("--to", "to", default="auto_gptq", show_default=True, help="Output format (see `repack formats`).")
@click.option("--variant", default=None, help="Output variant, e.g. v1/v2 for auto_gptq.")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the report (per layer errors) as JSON.")
@click.option("--quiet", is_flag=True, help="Print only the summary line.")
@click.option("--push-to-hub", "push_to", default=None, metavar="ORG/NAME",
              help="Upload the finished folder to this Hugging Face repo (created if missing).")
@handle_errors
def quantize_cmd(model, out, method, bits, group_size, sym, act_order, static_groups, no_true_sequential, damp, clip_search,
                 calib, nsamples, seqlen, to, variant, device, seed, force, as_json, quiet, push_to):
    from repack.quantize.driver import quantize  # torch: imported only by the commands that run it

    if push_to:
        hub.check_push_target(push_to)

    def on_block(b):
        if not quiet and not as_json:
            rel = sum(l.rel for l in b.layers) / len(b.layers)
            rtn = sum(l.rtn_rel for l in b.layers) / len(b.layers)
            click.echo(f"block {b.index}: {b.seconds:.2f}s, mean rel output error {rel:.4f} (rtn {rtn:.4f})", err=True)

    report = quantize(model, out, method, int(bits), group_size, sym, act_order, static_groups=static_groups,
                      true_sequential=not no_true_sequential, damp=damp, clip_search=clip_search, calib=calib, nsamples=nsamples, seqlen=seqlen,
                      to=to, variant=variant, seed=seed, device=device, force=force, on_block=on_block)
    url = hub.push(out, push_to) if push_to else None
    if as_json:
        emit_json(report.to_dict() | ({"pushed_to": url} if url else {}))
        return
    layers = report.layers()
    rel = sum(l.rel for l in layers) / len(layers)
    rtn = sum(l.rtn_rel for l in layers) / len(layers)
    order = ("" if not report.act_order else ", act-order" + (" (static groups)" if report.static_groups else " (g_idx)"))
    click.echo(f"wrote {report.out} ({report.format}/{report.variant}): {method} {bits}-bit g{group_size} "
               f"{'sym' if sym else 'asym'}{order}, {len(report.blocks)} blocks, {len(layers)} layers in {report.seconds:.1f}s on "
               f"{report.device}, peak RSS {report.peak_rss_bytes / 2**20:.0f} MiB; mean rel output error {rel:.4f} (rtn {rtn:.4f})")
    if url:
        click.echo(f"uploaded to {url}")
