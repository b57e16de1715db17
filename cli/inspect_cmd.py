import click

from repack.errors import UnsupportedError
from repack.inspect import inspect
from repack.targets import ENGINES, TargetReport, inspect_targets

from .common import emit_json, fail, handle_errors, show_progress

SHOWN_FAILURES = 8


@click.command("inspect")
@click.argument("path")
@click.option("--target", "engines", multiple=True, type=click.Choice(list(ENGINES)),
              help="Say whether PATH loads in this engine, with which kernel, and the fix if not (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@handle_errors
def inspect_cmd(path: str, engines: tuple[str, ...], as_json: bool, quiet: bool) -> None:
    """Describe a checkpoint: format, settings, layers, and which targets it converts to exactly.

    With --target, say instead whether it loads in vllm, transformers, lmdeploy or llama.cpp;
    the exit code is 2 when it does not load in some requested engine.

    \b
    Examples:
      repack inspect ./Llama-3-8B-GPTQ
      repack inspect ./Llama-3-8B-GPTQ --target vllm --target lmdeploy
    """
    if engines:
        return _targets(path, list(dict.fromkeys(engines)), as_json, quiet)
    info = inspect(path, progress=show_progress(quiet, as_json))
    if as_json:
        emit_json(info.to_dict())
        return
    _header(info)
    if info.layers:
        width = max(len(l.module) for l in info.layers)
        click.echo(f"\n  {'layer':<{width}}  {'N x K':>13}  bits  group  sym   act-order  scales")
        for l in info.layers:
            click.echo(f"  {l.module:<{width}}  {f'{l.shape[0]}x{l.shape[1]}':>13}  {l.bits:>4}  {l.group_size:>5}  "
                       f"{str(l.sym):<5} {str(l.act_order):<10} {l.scale_dtype}")
        click.echo("\n  targets:")
        for target, status in info.targets.items():
            click.echo(f"    {target:<18} {status}")


def _header(info) -> None:
    s = info.summary()
    click.echo(f"{info.path}: {info.format} ({info.variant})")
    if info.layers:
        gs = s["group_size"]
        click.echo(f"  {s['bits']}-bit, group size {gs}, {'symmetric' if s['sym'] is True else 'asymmetric' if s['sym'] is False else 'mixed sym/asym'}, "
                   f"act-order {s['act_order']}, scales {s['scale_dtype']}")
    click.echo(f"  {len(info.layers)} quantized layers, {info.passthrough} other tensors")
    for note in info.notes:
        click.echo(f"  note: {note}")


def _targets(path: str, engines: list[str], as_json: bool, quiet: bool) -> None:
    info, reports = inspect_targets(path, engines, progress=show_progress(quiet, as_json))
    if as_json:
        emit_json(info.to_dict() | {"engines": [r.to_dict() for r in reports]})
    else:
        _header(info)
        for r in reports:
            _show(r)
    refused = [r.engine for r in reports if not r.loads]
    if refused:
        fail(f"{path}: does not load in {', '.join(refused)}", UnsupportedError.exit_code)


def _show(r: TargetReport) -> None:
    click.echo(f"\n{r.engine}: " + (f"loads ({r.kernel})" if r.loads else "does not load"))
    for f in r.failures[:SHOWN_FAILURES]:
        click.echo(f"  - {f}")
    if len(r.failures) > SHOWN_FAILURES:
        click.echo(f"  ... and {len(r.failures) - SHOWN_FAILURES} more (--json lists all)")
    for note in r.notes:
        click.echo(f"  note: {note}")
    if r.fix:
        click.echo(f"  fix: {r.fix}")
    elif r.no_fix:
        click.echo(f"  no fix: {r.no_fix}")
