"""The same chain as a Kubeflow Pipelines v2 spec, compiled with the kfp SDK (extra ``kfp``).

  python -m components.kfp_pipeline --output=lorbms_pipeline.yaml --image=REGISTRY/lorbms_tf:TAG

Each step is a container component that runs the step's CLI (``python -m components.<step>``)
in an image with this package installed (build one from any TF 2.20 image with
``pip install lorbms_tf``); the artifacts pass between steps as KFP artifacts (their paths
are the ``--output_dir`` / input folders). Compiling needs no cluster; a test compiles the
spec and checks the five steps and their wiring.
"""

# No "from __future__ import annotations": kfp reads the component signatures' real types.

import argparse

DEFAULT_IMAGE = "lorbms_tf:latest"


def build_pipeline(image: str = DEFAULT_IMAGE):
  """The pipeline function (decorated with ``kfp.dsl.pipeline``)."""
  from kfp import dsl  # pylint: disable=import-outside-toplevel

  @dsl.container_component
  def example_gen(dataset: str, examples: dsl.Output[dsl.Artifact]):
    return dsl.ContainerSpec(image=image, command=["python", "-m", "components.example_gen"],
                             args=[f"--dataset={dataset}", "--output_dir", examples.path])

  @dsl.container_component
  def similarity(examples: dsl.Input[dsl.Artifact], neighbours: dsl.Output[dsl.Artifact]):
    return dsl.ContainerSpec(
        image=image, command=["python", "-m", "components.similarity"],
        args=[dsl.ConcatPlaceholder(["--dataset=tfrecord:", examples.path, "/examples-*"]),
              "--output_dir", dsl.ConcatPlaceholder([neighbours.path, "/table"])])

  @dsl.container_component
  def trainer(examples: dsl.Input[dsl.Artifact], neighbours: dsl.Input[dsl.Artifact],
              train_flagfile: str, model: dsl.Output[dsl.Artifact]):
    return dsl.ContainerSpec(
        image=image, command=["python", "-m", "components.trainer"],
        args=["--examples", examples.path, "--neighbours", neighbours.path,
              "--output_dir", model.path, "--",
              dsl.ConcatPlaceholder(["--flagfile=", train_flagfile])])

  @dsl.container_component
  def evaluator(model: dsl.Input[dsl.Artifact], eval_flagfile: str,
                evaluation: dsl.Output[dsl.Artifact]):
    return dsl.ContainerSpec(
        image=image, command=["python", "-m", "components.evaluator"],
        args=["--model", model.path, "--output_dir", evaluation.path, "--",
              dsl.ConcatPlaceholder(["--flagfile=", eval_flagfile]), "--dataset=scenes"])

  @dsl.container_component
  def pusher(model: dsl.Input[dsl.Artifact], evaluation: dsl.Input[dsl.Artifact],
             push_destination: str, pushed: dsl.Output[dsl.Artifact]):
    return dsl.ContainerSpec(
        image=image, command=["python", "-m", "components.pusher"],
        args=["--model", model.path, "--blessing", evaluation.path,
              "--push_destination", push_destination, "--output_dir", pushed.path])

  @dsl.pipeline(name="lorbms-tf", description="LORBMS: examples, neighbours, training, "
                "evaluation with a blessing, validated SavedModel push.")
  def lorbms_pipeline(dataset: str = "scenes", train_flagfile: str = "configs/scenes.flags",
                      eval_flagfile: str = "configs/eval_scenes.flags",
                      push_destination: str = "saved_models/lorbms"):
    examples = example_gen(dataset=dataset)
    neighbours = similarity(examples=examples.outputs["examples"])
    model = trainer(examples=examples.outputs["examples"],
                    neighbours=neighbours.outputs["neighbours"], train_flagfile=train_flagfile)
    evaluation = evaluator(model=model.outputs["model"], eval_flagfile=eval_flagfile)
    pusher(model=model.outputs["model"], evaluation=evaluation.outputs["evaluation"],
           push_destination=push_destination)

  return lorbms_pipeline


def compile_pipeline(path: str, image: str = DEFAULT_IMAGE) -> str:
  from kfp import compiler  # pylint: disable=import-outside-toplevel
  compiler.Compiler().compile(build_pipeline(image), package_path=path)
  return path


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--output", default="lorbms_pipeline.yaml")
  parser.add_argument("--image", default=DEFAULT_IMAGE)
  args = parser.parse_args()
  print(compile_pipeline(args.output, args.image))


if __name__ == "__main__":
  main()
