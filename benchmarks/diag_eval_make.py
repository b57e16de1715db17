import random, sys
sys.path.insert(0, ".")
from pathlib import Path
from repack.synthetic import write_float_model
from repack.quantize.driver import quantize
from repack.convert import convert
d = Path(sys.argv[1]); d.mkdir(parents=True, exist_ok=True)
f = write_float_model(d / "float")
WORDS = "the a river stone quick slow light dark runs falls over under and of to".split()
rng = random.Random(5); (d / "text.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(3000)))
quantize(f, d / "gptq", method="gptq", bits=4, group_size=64, sym=False, nsamples=16, seqlen=64, seed=0, device="cpu")
for to in ("auto_awq", "compressed_tensors", "auto_round"):
    convert(d / "gptq", d / to, to)
