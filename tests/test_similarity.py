"""Similarity: ScaNN vs exact, self/duplicate exclusion, table I/O, extractors, Beam, the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from lorbms_tf import conventions
from lorbms_tf.data import scenes
from lorbms_tf.similarity import beam_pipeline, extractors, index
from lorbms_tf.similarity import table as table_lib
import lorbms_tf.similarity as similarity

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _clustered(n, dim, clusters=50, seed=0):
  """Gaussian blobs: realistic neighbour structure (uniform noise has none)."""
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(clusters, dim)) * 4
  return (centers[rng.integers(0, clusters, n)] + rng.normal(size=(n, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def scene_data():
  return scenes.generate_scenes(48, 64, seed=7)


# --- index ----------------------------------------------------------------------------------

def test_scann_tree_matches_exact_and_excludes_self():
  db = _clustered(6000, 16)
  settings = index.choose_settings(db.shape[0], k=10)
  assert settings.kind == "tree_ah"  # the approximate path, not brute force
  result = index.search_position(db, k=10, settings=settings, recall_queries=300)
  assert result.recall >= 0.95
  rows = np.arange(db.shape[0])[:, None]
  assert not (result.rows == rows).any()  # no self-matches
  assert (result.rows >= 0).all()
  assert (np.diff(result.distances, axis=1) >= 0).all()
  np.testing.assert_allclose(
      result.distances, ((db[result.rows] - db[:, None]) ** 2).sum(-1), rtol=1e-4, atol=1e-4)


def test_small_leaves_are_kept_whole():
  """ScaNN's default min cluster size (50) dissolves leaves smaller than that, and with ~40
  vectors per leaf the partition falls apart: searching 1 leaf finds far fewer neighbours."""
  db = _clustered(20000, 16, clusters=500)
  num_leaves = 500
  assert index.min_partition_size(len(db), num_leaves) < 50
  recalls = {}
  for min_size in (50, 0):  # 0 = ours, index.min_partition_size
    settings = index.IndexSettings(kind="tree_bf", num_leaves=num_leaves, leaves_to_search=1,
                                   training_sample_size=len(db), min_partition_size=min_size)
    recalls[min_size] = index.search_position(db, k=10, settings=settings,
                                              recall_queries=500).recall
  assert recalls[0] > recalls[50] + 0.05, recalls


def test_tuned_settings_reach_the_target_recall_and_are_the_fastest_that_do():
  db = _clustered(8000, 16, clusters=200)
  tuning = index.tune_settings(db, k=10, target_recall=0.97, sample_queries=300,
                               timing_queries=1000, leaf_factors=(1.0, 2.0),
                               reorder_factors=(4, 16))
  assert tuning.settings.kind in ("tree_bf", "tree_ah") and tuning.recall >= 0.97
  # The space searched: exact leaves and AH at each dims per block x reorder depth.
  assert {(t["kind"], t["dims_per_block"], t["reorder"] // 15) for t in tuning.tried
          if t["num_leaves"] == tuning.tried[0]["num_leaves"]} == {
              ("tree_bf", 2, 0), ("tree_ah", 2, 4), ("tree_ah", 2, 16), ("tree_ah", 4, 4),
              ("tree_ah", 4, 16)}
  reached = [t for t in tuning.tried if t["recall"] >= 0.97]
  assert tuning.queries_per_second == max(t["queries_per_second"] for t in reached)
  # Fewest leaves: one step fewer (where evaluated) misses the target.
  best = next(t for t in tuning.tried if t["queries_per_second"] == tuning.queries_per_second)
  fewer = [int(n) for n, r in best["recalls_seen"].items() if int(n) < best["leaves_to_search"]]
  assert all(best["recalls_seen"][str(n)] < 0.97 for n in fewer)
  # The table built with them measures (about) the tuned recall on fresh queries.
  result = index.find_neighbours(np.arange(len(db)), np.stack([db] * 4, 1), k=10,
                                 recall_queries=300, target_recall=0.97, seed=5)
  assert result.summary()["tuning"]["settings"] == result.positions[0].settings.to_dict()
  assert result.summary()["recall_at_k_mean"] >= 0.95
  json.dumps(result.summary())  # record.json-ready
  small = index.tune_settings(db[:1000], k=10)
  assert small.settings.kind == "brute_force" and small.recall == 1.0


def test_exact_search_matches_bruteforce_definition():
  db, q = _clustered(500, 8, seed=1), _clustered(20, 8, seed=2)
  rows, dist = index.exact_search(db, q, 5, chunk_bytes=4096)  # forces several blocks
  full = ((q[:, None] - db[None]) ** 2).sum(-1)
  np.testing.assert_array_equal(rows, np.argsort(full, axis=1, kind="stable")[:, :5])
  np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :5], rtol=1e-4, atol=1e-4)


def test_exact_duplicates_are_dropped_and_counted():
  db = _clustered(300, 8)
  db[10] = db[20]  # the same quadrant stored twice
  result = index.search_position(db, k=5, recall_queries=0)
  assert 20 not in result.rows[10] and 10 not in result.rows[20]
  assert result.num_duplicates_dropped == 2
  assert (result.distances > 0).all()


def test_find_neighbours_maps_rows_to_sorted_ids():
  rng = np.random.default_rng(0)
  ids = rng.permutation(1000)[:200] * 3 + 5  # sparse, shuffled ids
  emb = np.stack([_clustered(200, 8, seed=s) for s in range(4)], axis=1)
  result = index.find_neighbours(ids, emb, k=4, recall_queries=50)
  order = np.argsort(ids)
  np.testing.assert_array_equal(result.ids, ids[order])
  assert result.neighbour_ids.shape == (200, 4, 4)
  assert np.isin(result.neighbour_ids, ids).all()
  assert not (result.neighbour_ids == result.ids[:, None, None]).any()
  # Spot-check one entry against exact search by id.
  row_of = {int(v): i for i, v in enumerate(ids)}
  q = 17
  for pos in range(4):
    truth, _ = index.exact_neighbours(emb[:, pos], np.array([row_of[int(result.ids[q])]]), 4)
    np.testing.assert_array_equal(result.neighbour_ids[q, pos], ids[truth[0]])


@pytest.mark.parametrize("n,k", [(0, 3), (5, 5), (5, 9)])
def test_empty_dataset_or_k_too_large_is_a_clear_error(n, k):
  emb = np.zeros([n, 4, 8], np.float32)
  with pytest.raises(ValueError, match="empty|only"):
    index.find_neighbours(np.arange(n), emb, k=k)


def test_neighbour_precision_counts_same_shapes():
  shapes = np.array([[1, 2, 0, 3], [1, 2, 0, 4], [2, 2, 0, 3]])
  nb = np.array([[[1]] * 4, [[0]] * 4, [[0]] * 4])
  p = index.neighbour_precision(np.arange(3), nb, shapes)
  # matches: img0 vs 1 -> 3 of 4; img1 vs 0 -> 3 of 4; img2 vs 0 -> 3 of 4.
  assert p["precision"] == pytest.approx(9 / 12)
  assert p["precision_per_position"] == pytest.approx([2 / 3, 1.0, 1.0, 1 / 3])


# --- table ----------------------------------------------------------------------------------

def test_table_round_trip_with_searchers_and_query(tmp_path):
  ids = np.arange(100, 400, 2)
  emb = np.stack([_clustered(ids.size, 8, seed=s) for s in range(4)], axis=1)
  table, searchers = similarity.build_neighbour_table(ids, emb, k=3, recall_queries=20,
                                                      record={"extractor": {"spec": "test"}})
  path = table_lib.save_neighbour_table(tmp_path / "nb", table, searchers)
  loaded = table_lib.load_neighbour_table(path)
  assert isinstance(loaded.ids, np.memmap)
  np.testing.assert_array_equal(loaded.ids, table.ids)
  np.testing.assert_array_equal(loaded.neighbour_ids, table.neighbour_ids)
  np.testing.assert_array_equal(loaded.distances, table.distances)
  assert loaded.ids.dtype == np.int64 and loaded.distances.dtype == np.float32
  assert loaded.record["k"] == 3 and loaded.record["recall_at_k"] == 1.0
  assert loaded.record["extractor"]["spec"] == "test"
  assert set(loaded.record["versions"]) >= {"tensorflow", "scann", "numpy"}
  nb, _ = loaded.lookup([ids[5]])
  np.testing.assert_array_equal(nb[0], table.neighbour_ids[5])
  # The saved searchers answer queries for new vectors, by id; an indexed one finds itself.
  found, dist = table_lib.query(path, emb[:2], k=4)
  assert found.shape == (2, 4, 4)
  np.testing.assert_array_equal(found[:, :, 0], np.broadcast_to(ids[:2, None], (2, 4)))
  np.testing.assert_array_equal(found[:, :, 1:], table.neighbour_ids[:2])
  # Rewriting replaces the table atomically and leaves no temporary directories.
  table_lib.save_neighbour_table(path, table)
  assert sorted(os.listdir(tmp_path)) == ["nb"]
  assert not os.path.exists(os.path.join(path, table_lib.SEARCHERS_DIR))


def test_table_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no neighbour table"):
    table_lib.load_neighbour_table(tmp_path / "missing")
  good = table_lib.NeighbourTable(np.arange(3, dtype=np.int64), np.zeros([3, 4, 2], np.int64),
                                  np.zeros([3, 4, 2], np.float32))
  path = table_lib.save_neighbour_table(tmp_path / "t", good)
  np.save(os.path.join(path, table_lib.DISTANCES_FILE), np.zeros([3, 4, 5], np.float32))
  with pytest.raises(ValueError, match="distances must be"):
    table_lib.load_neighbour_table(path)
  os.remove(os.path.join(path, table_lib.IDS_FILE))
  with pytest.raises(FileNotFoundError, match="missing ids.npy"):
    table_lib.load_neighbour_table(path)
  with pytest.raises(ValueError, match="ascending"):
    table_lib.save_neighbour_table(tmp_path / "u", table_lib.NeighbourTable(
        np.array([2, 1, 3]), good.neighbour_ids, good.distances))


# --- extractors -----------------------------------------------------------------------------

def test_quadrant_crops_follow_conventions(scene_data):
  images = scene_data["image"][:3]
  np.testing.assert_array_equal(extractors.quadrant_crops(images),
                                conventions.image_quadrants(tf.constant(images)).numpy())


@pytest.mark.parametrize("spec,dim", [("pixels", 64), ("random_cnn", 128),
                                      ("random_encoder:tiny", 16)])
def test_extractor_shapes_and_determinism(scene_data, spec, dim):
  images = scene_data["image"][:10]
  options = extractors.ExtractorOptions(batch_size=4)  # several batches, a padded last one
  ex = extractors.fit_extractor(extractors.make_extractor(spec, options), scene_data["image"])
  out = ex(images)
  assert out.shape == (10, 4, dim) and out.dtype == np.float32
  assert np.isfinite(out).all()
  again = extractors.fit_extractor(extractors.make_extractor(spec, options), scene_data["image"])
  np.testing.assert_allclose(again(images), out, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="empty"):
    ex(images[:0])


def test_keras_app_extractor_random_weights_and_weights_file(tmp_path, scene_data):
  options = extractors.ExtractorOptions(batch_size=2, app_image_size=32)
  ex = extractors.make_extractor("keras_app:ResNet50", options)
  out = ex(scene_data["image"][:2])
  assert out.shape == (2, 4, 2048) and np.isfinite(out).all()
  assert ex.describe()["weights"].startswith("random")
  weights = str(tmp_path / "mnv3.weights.h5")
  small = extractors.make_extractor("keras_app:MobileNetV3Small", options)
  small.model.save_weights(weights)
  loaded = extractors.make_extractor(f"keras_app:MobileNetV3Small:{weights}", options)
  np.testing.assert_allclose(loaded(scene_data["image"][:1]), small(scene_data["image"][:1]),
                             rtol=1e-5, atol=1e-5)
  with pytest.raises(FileNotFoundError):
    extractors.make_extractor("keras_app:ResNet50:/no/such/file.h5", options)
  with pytest.raises(ValueError, match="unknown extractor"):
    extractors.make_extractor("sift")


def test_encoder_checkpoint_extractor(tmp_path, scene_data):
  from lorbms_tf import checkpoints, models
  from lorbms_tf.lorbms import LorbmsModel
  workdir = str(tmp_path / "run")
  preset = models.get_preset("tiny")
  model = LorbmsModel(preset)
  checkpoints.write_config(workdir, {"model": preset.to_dict()})
  manager = tf.train.CheckpointManager(checkpoints.training_checkpoint(model),
                                       os.path.join(workdir, checkpoints.CHECKPOINT_DIR), 1)
  manager.save(checkpoint_number=1)
  ex = extractors.make_extractor(f"encoder:{workdir}")
  images = scene_data["image"][:3]
  expected = model.encoder(extractors.to_unit_range(images), training=False).numpy()
  np.testing.assert_allclose(ex(images), expected.reshape(3, 4, -1), rtol=1e-4, atol=1e-5)


# --- Beam -----------------------------------------------------------------------------------

def test_beam_directrunner_equals_in_process_and_counts_corrupt(tmp_path, scene_data):
  if not beam_pipeline.BEAM_AVAILABLE:
    pytest.skip("apache-beam is not installed (the optional 'beam' extra)")
  images, ids = scene_data["image"][:20], np.arange(1000, 1020)
  ex = extractors.make_extractor("pixels").fit(images)
  expected = ex(images)
  items = [(int(i), tf.io.encode_png(im).numpy()) for i, im in zip(ids, images)]
  items[3] = (int(ids[3]), b"not an image")
  config = beam_pipeline.EmbedConfig("pixels", state=ex.state(), batch_size=8)
  manifest = beam_pipeline.run_embedding_pipeline(
      {"kind": "encoded", "items": items}, str(tmp_path / "emb"), config, num_shards=2)
  assert manifest["num_embeddings"] == 19 and manifest["num_skipped"] == 1
  assert manifest["skipped_ids"] == [int(ids[3])]
  got_ids, got = beam_pipeline.read_embedding_shards(str(tmp_path / "emb"))
  keep = np.delete(np.arange(20), 3)
  np.testing.assert_array_equal(got_ids, ids[keep])
  np.testing.assert_allclose(got.transpose(1, 0, 2), expected[keep], rtol=1e-6, atol=1e-6)


def test_beam_random_cnn_equals_in_process(tmp_path, scene_data):
  if not beam_pipeline.BEAM_AVAILABLE:
    pytest.skip("apache-beam is not installed (the optional 'beam' extra)")
  images = scene_data["image"][:12]
  expected = extractors.make_extractor("random_cnn")(images)
  config = beam_pipeline.EmbedConfig("random_cnn", batch_size=5)
  beam_pipeline.run_embedding_pipeline({"kind": "arrays", "ids": np.arange(12),
                                        "images": images}, str(tmp_path / "emb"), config)
  _, got = beam_pipeline.read_embedding_shards(str(tmp_path / "emb"))
  np.testing.assert_allclose(got.transpose(1, 0, 2), expected, rtol=1e-4, atol=1e-5)


# --- component ------------------------------------------------------------------------------

def _scene_folder(root, images, corrupt=()):
  root.mkdir()
  for i, image in enumerate(images):
    path = root / f"{i:04d}.png"
    path.write_bytes(b"broken" if i in corrupt else tf.io.encode_png(image).numpy())
  return f"folder:{root}"


def test_component_cli_writes_a_loadable_table(tmp_path, scene_data):
  dataset = _scene_folder(tmp_path / "imgs", scene_data["image"][:30], corrupt=(4,))
  out = tmp_path / "table"
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run(
      [sys.executable, "-m", "components.similarity", f"--dataset={dataset}",
       f"--output_dir={out}", "--k=3", "--recall_queries=10", "--batch_size=16"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stderr[-3000:]
  table = table_lib.load_neighbour_table(out)
  assert len(table) == 29 and table.k == 3 and 4 not in table.ids
  assert table.record["counts"]["num_skipped"] == 1
  assert table.record["extractor"]["spec"] == "pixels"
  assert table.record["recall_at_k"] == 1.0
  # The saved extractor state embeds new images exactly like the table's own.
  ex = extractors.from_table(str(out))
  found, dist = table_lib.query(str(out), ex(scene_data["image"][:1]), k=1)
  assert found[0, 0, 0] == 0 and dist[0, 0, 0] == pytest.approx(0, abs=1e-4)


def test_component_run_reports_precision_on_scene_tfrecords(tmp_path, scene_data):
  from components import similarity as component
  from lorbms_tf.data import sources
  sources.write_tfrecords(
      ({"image": im, "id": i, "shapes": s}
       for i, (im, s) in enumerate(zip(scene_data["image"], scene_data["shapes"]))),
      str(tmp_path / "rec" / "scenes"), num_shards=2)
  inputs = component.SimilarityInputs(dataset=f"tfrecord:{tmp_path}/rec/scenes-*", k=4,
                                      recall_queries=10, limit=40)
  outputs = component.run(inputs, str(tmp_path / "table"))
  assert outputs.num_images == 40 and outputs.neighbour_precision is not None
  record = json.load(open(outputs.record_path))
  assert record["neighbour_precision"]["chance"] > 0
  with pytest.raises(ValueError, match="only 40 images"):
    component.run(inputs.__class__(**{**inputs.__dict__, "k": 40}), str(tmp_path / "t2"))
