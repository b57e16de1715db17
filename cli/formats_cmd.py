import click

from repack import formats

from .common import emit_json, handle_errors


@click.command("formats")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def formats_cmd(as_json: bool) -> None:
    """List the registered formats and their variants."""
    rows = [{"name": f.name, "variants": list(f.variants), "default": f.default_variant, "description": f.description}
            for f in formats.all_formats()]
    if as_json:
        emit_json(rows)
        return
    nw = max(len(r["name"]) for r in rows)
    vw = max(len(", ".join(r["variants"])) for r in rows)
    for r in rows:
        click.echo(f"{r['name']:<{nw}}  {', '.join(r['variants']):<{vw}}  {r['description']}")
