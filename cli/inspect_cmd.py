import click

from repack.inspect import inspect

from .common import emit_json, handle_errors, show_progress


@click.command("inspect")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@handle_errors
def inspect_cmd(path: str, as_json: bool, quiet: bool) -> None:
    """Describe a checkpoint: format, settings, layers, and which targets it converts to exactly.

    \b
    Example:
      repack inspect ./Llama-3-8B-GPTQ
    """
    info = inspect(path, progress=show_progress(quiet, as_json))
    if as_json:
        emit_json(info.to_dict())
        return
    s = info.summary()
    click.echo(f"{info.path}: {info.format} ({info.variant})")
    if info.layers:
        gs = s["group_size"]
        click.echo(f"  {s['bits']}-bit, group size {gs}, {'symmetric' if s['sym'] is True else 'asymmetric' if s['sym'] is False else 'mixed sym/asym'}, "
                   f"act-order {s['act_order']}, scales {s['scale_dtype']}")
    click.echo(f"  {len(info.layers)} quantized layers, {info.passthrough} other tensors")
    for note in info.notes:
        click.echo(f"  note: {note}")
    if info.layers:
        width = max(len(l.module) for l in info.layers)
        click.echo(f"\n  {'layer':<{width}}  {'N x K':>13}  bits  group  sym   act-order  scales")
        for l in info.layers:
            click.echo(f"  {l.module:<{width}}  {f'{l.shape[0]}x{l.shape[1]}':>13}  {l.bits:>4}  {l.group_size:>5}  "
                       f"{str(l.sym):<5} {str(l.act_order):<10} {l.scale_dtype}")
        click.echo("\n  targets:")
        for target, status in info.targets.items():
            click.echo(f"    {target:<18} {status}")
