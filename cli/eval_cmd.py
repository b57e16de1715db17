import click


from .common import emit_json, fail, handle_errors, show_progress


@click.command("eval")
@click.argument("checkpoint")
@click.option("--text", default=None, type=click.Path(dir_okay=False), help="A text file or hf://datasets/ORG/NAME/PATH (.jsonl, .parquet: the 'text' field/column): report perplexity.")
@click.option("--generate", "prompt", default=None, help="Print the greedy continuation of this prompt.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--seqlen", type=click.IntRange(min=2), default=512, show_default=True, help="Tokens per window.")
@click.option("--max-windows", type=click.IntRange(min=1), default=None, help="Evaluate only the first windows.")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True,
              help="Where the model runs.")
@click.option("--backend", type=click.Choice(["auto", "reference", "triton"]), default="auto", show_default=True,
              help="Quantized linears: Triton W4A16 kernel on the checkpoint's own layout (CUDA), or the fp32 reference.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", is_flag=True, help="Print only the perplexity.")
@handle_errors
def eval_cmd(checkpoint, text, prompt, max_new_tokens, seqlen, max_windows, device, backend, as_json, quiet):
    """Perplexity of CHECKPOINT (any readable format, or a float model) on a text file, over
    non-overlapping windows of --seqlen tokens. Tokens come from the model's tokenizer.json when the
    `tokenizers` package is installed, else from UTF-8 bytes (fine for tiny test models only).

    \b
    Examples:
      repack eval ./model-gptq --text heldout.txt --seqlen 512
      repack eval ./model.Q4_0.gguf --text heldout.txt --json
      repack eval ./model-awq --generate "The capital of France is" --max-new-tokens 16
    """
    if text is None and prompt is None:
        fail("give --text FILE (perplexity) and/or --generate PROMPT")
    from repack.evaluate import evaluate, generate  # torch: imported only by the commands that run it

    out = {}
    if text is not None:
        r = evaluate(checkpoint, text, seqlen, max_windows, progress=show_progress(quiet, as_json), device=device,
                     backend=backend)
        out["perplexity"] = r.to_dict()
        if quiet and not as_json:
            click.echo(f"{r.perplexity:.6g}")
        elif not as_json:
            click.echo(f"{r.checkpoint} ({r.format}): perplexity {r.perplexity:.4f} over {r.tokens} tokens "
                       f"({r.windows} windows of {r.seqlen}, tokenizer: {r.tokenizer}, {r.backend} on {r.device})")
    if prompt is not None:
        g = generate(checkpoint, prompt, max_new_tokens, device=device, backend=backend)
        out["generation"] = vars(g)
        if not as_json:
            click.echo(g.text if quiet else f"{g.prompt}{g.text}")
    if as_json:
        emit_json(out)
