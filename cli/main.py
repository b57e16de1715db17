import click

from repack.allocator import keep_freed_memory

from .convert_cmd import convert_cmd
from .demo_cmd import demo_cmd
from .eval_cmd import eval_cmd
from .formats_cmd import formats_cmd
from .inspect_cmd import inspect_cmd
from .quantize_cmd import quantize_cmd
from .verify_cmd import verify_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="repack")
def main() -> None:
    """repack: convert 2/3/4/8-bit weight-only quantized checkpoints between formats, exactly."""
    keep_freed_memory()


for command in (formats_cmd, inspect_cmd, convert_cmd, quantize_cmd, verify_cmd, eval_cmd, demo_cmd):
    main.add_command(command)

if __name__ == "__main__":
    main()
