import click


from .common import emit_json, handle_errors


@click.command("demo")
@click.option("--keep", type=click.Path(file_okay=False), default=None, help="Keep the demo's folders here.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def demo_cmd(keep, as_json) -> None:
    """Quantize a tiny built-in Llama (RTN, 4-bit g64 asym), convert it through every format and
    back, and print a table: format, bytes, exact?, max abs diff of the dequantized weights."""
    from repack.demo import format_table, run_demo  # torch: imported only by the commands that run it

    rows = run_demo(keep)
    if as_json:
        emit_json([vars(r) for r in rows])
    else:
        click.echo(format_table(rows))
    if not all(r.exact for r in rows):
        raise SystemExit(1)
