"""lorbms_tf: Learning Object Representations By Mixing Scenes, in TensorFlow 2 / Keras 3."""

from setuptools import find_packages, setup

# TF is pinned to 2.20: ScaNN 1.4.2's custom ops are built against its ABI
# (with 2.21, `import scann` fails). TF-GAN is used for its eval modules only,
# imported through lorbms_tf/eval/tfgan_compat.py (its package __init__ needs tf.estimator).
INSTALL_REQUIRES = [
    "tensorflow~=2.20.0",
    "keras>=3.8,<4",
    "tensorflow-datasets>=4.9.6,<5",
    "scann==1.4.*",
    "tensorflow-gan==2.1.0",
    "tensorflow-probability==0.25.0",
    "tf-keras~=2.20.0",  # tensorflow-probability imports it under Keras 3
    "absl-py>=2.1",
    "numpy>=1.26,<3",
    "matplotlib>=3.8",
    "pillow>=10",
]

EXTRAS_REQUIRE = {
    # faiss-cpu: tests/test_transfer.py runs the knowledge-transfer k-means.
    "test": ["pytest>=8", "pytest-xdist>=3.5", "faiss-cpu>=1.8"],
    # Knowledge transfer (python -m lorbms_tf.transfer): k-means pseudo labels at scale.
    "transfer": ["faiss-cpu>=1.8"],
    # Embedding extraction at scale (issue: similarity): DirectRunner locally, Dataflow/Flink/Spark.
    "beam": ["apache-beam[tfrecord]>=2.60"],
    # TF Serving warm-up requests (PredictionLog protos) in exported SavedModels.
    "serving": ["tensorflow-serving-api~=2.20.0"],
    # The pipeline as a Kubeflow Pipelines v2 spec (components/kfp_pipeline.py).
    "pipeline": ["kfp~=2.17"],
    # Benchmark-only baselines.
    "bench": ["faiss-cpu>=1.8"],
}

setup(
    name="lorbms_tf",
    version="0.1.0",
    description="Learning object representations by mixing scenes (TensorFlow 2 / Keras 3)",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["lorbms_tf", "lorbms_tf.*", "components", "components.*"]),
    package_data={"lorbms_tf": ["py.typed"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "lorbms-train=lorbms_tf.train:run",
            "lorbms-evaluate=lorbms_tf.evaluate:run",
            "lorbms-render=lorbms_tf.render:run",
        ],
    },
)
