"""Training / inference speed of farnet-lite against the official pipeline's approach (prints figures).

    python benchmarks/benchmark_training.py --input-size 800 640 --batch-size 8 --precision bf16     # on a GPU
    python benchmarks/benchmark_training.py                                               # small CPU defaults

Same options as ``farnet benchmark``; see farnet_lite/reproduction/benchmark.py for what is measured and how.
"""
from farnet_lite.reproduction.benchmark import main

if __name__ == "__main__":
    main()
