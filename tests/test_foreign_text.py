"""Text classifiers from Hugging Face ``transformers`` (seeded small configs, nothing downloaded), exported with
``input_ids`` + ``attention_mask`` as users export them: inspect, localize and synthesize run on them, and
every number is checked against an independent computation (numpy from exposed activations, plain torch FGSM
on the source module, onnxruntime on the projected token ids)."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from foreign_models import LENGTH, TEXT_MODELS, VOCAB, export_text, text_classifier, token_data

pytest.importorskip("transformers", reason="the text-model tests build models with transformers (the dev extra)")
torch = pytest.importorskip("torch")

import onnxfault  # noqa: E402
from onnxfault.errors import OnnxFaultError  # noqa: E402
from onnxfault.graph import expose_outputs  # noqa: E402


@pytest.fixture(scope="module")
def text_models(tmp_path_factory):
    """name → (source module, ONNX path), and the data as an .npz of members named after the inputs."""
    root = tmp_path_factory.mktemp("text")
    data = token_data()
    np.savez(root / "tokens.npz", **data)
    models = {name: (module, export_text(module, root / f"{name}.onnx"))
              for name in TEXT_MODELS for module in [text_classifier(name)]}
    return models, root / "tokens.npz", data


def plain_fgsm(module, data: dict, positions: np.ndarray, distance: float, low: float, high: float,
               editable: np.ndarray) -> np.ndarray:
    """FGSM in embedding space on the source module, in plain torch: the word-embedding module's output is
    replaced (a forward hook) by a leaf tensor, the cross-entropy of the true labels ascended by one sign step of
    ``distance``, clipped to [low, high]; positions that are not ``editable`` keep their embedding."""
    ids = torch.from_numpy(data["input_ids"][positions])
    mask = torch.from_numpy(data["attention_mask"][positions])
    embeddings = module.get_input_embeddings()
    leaf = embeddings(ids).detach().requires_grad_(True)
    handle = embeddings.register_forward_hook(lambda _module, _inputs, _output: leaf)
    try:
        logits = module(input_ids=ids, attention_mask=mask).logits
    finally:
        handle.remove()
    labels = torch.from_numpy(data["y"][positions])
    torch.nn.functional.cross_entropy(logits.double(), labels, reduction="sum").backward()
    moved = (leaf + distance * leaf.grad.sign()).clamp(low, high).detach().numpy()
    start = leaf.detach().numpy()
    return np.where(editable[:, :, None], moved, start)


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_text_classifier_end_to_end(text_models, name):
    """inspect lists both int64 inputs; localize counts every sample once per neuron; FGSM in embedding space
    equals a plain torch FGSM on the source module on ≥ 99.9 % of elements; the projected token ids are real
    ids whose predictions are what onnxruntime gives on them."""
    models, npz, data = text_models
    module, path = models[name]
    info = onnxfault.inspect_model(path)
    assert [(i["name"], i["dtype"]) for i in info["inputs"]] == [("input_ids", "int64"), ("attention_mask", "int64")]
    ops = {layer["op"] for layer in info["layers"]}
    assert "LayerNormalization" in ops, ops  # the blocks' LayerNorm outputs
    assert "Tanh" in ops or name in ("distilbert", "electra"), ops  # the pooler (their heads have none)
    assert ops & {"Gelu", "Relu", "Mul", "Erf"}, ops  # the blocks' MLP activations
    ranking = onnxfault.localize(path, npz, k=5)
    assert ranking.spectrum.samples == len(data["y"]) and ranking.spectrum.token_activity == "any"
    assert (ranking.spectrum.counts.sum(axis=0) == len(data["y"])).all()

    result = onnxfault.synthesize(path, npz, method="fgsm", samples=4, distance=0.02)
    a = result.arrays
    positions = np.asarray(result.report["seeds"]["indices"])
    low, high = result.clip
    table = module.get_input_embeddings().weight.detach().numpy()
    assert (low, high) == (float(table.min()), float(table.max()))
    original_ids = a["original_input_ids"]
    real = a["original_attention_mask"].astype(bool)
    editable = real & ~np.isin(original_ids, np.unique(np.concatenate(
        [original_ids[:, 0], original_ids[np.arange(len(real)), real.sum(1) - 1], original_ids[~real]])))
    want = plain_fgsm(module, data, positions, 0.02, low, high, editable)
    assert np.mean(np.isclose(a["synthesized"], want, rtol=0, atol=1e-6)) >= 0.999

    # the projection: every editable position holds the nearest allowed row, the others their own id
    assert np.array_equal(a["input_ids"][~editable], original_ids[~editable])
    specials = np.unique(np.concatenate([original_ids[:, 0], original_ids[np.arange(len(real)), real.sum(1) - 1],
                                         original_ids[~real]]))
    allowed = np.setdiff1d(np.arange(VOCAB), specials)
    distances = ((a["synthesized"][editable][:, None, :].astype(np.float64) - table[allowed][None]) ** 2).sum(-1)
    assert np.array_equal(a["input_ids"][editable], allowed[distances.argmin(axis=1)])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input_ids": a["input_ids"], "attention_mask": a["attention_mask"]})[0]
    assert np.array_equal(a["predictions_after"], logits.argmax(1))
    changed = (a["input_ids"] != original_ids).sum(axis=1)
    assert result.report["tokens_changed"] == {"mean": float(changed.mean()), "max": int(changed.max())}


@pytest.mark.parametrize("rule", ["any", "mean", "cls", "element"])
def test_localize_counts_equal_counts_by_hand_from_activations_and_mask(text_models, rule):
    """Every (as, af, ns, nf) of a BERT model equals numpy's count from the exposed activations: a (N, T, H)
    neuron is active when its unit is above 0 on any real token (mean over real tokens, first token); at
    element granularity each (t, h) is a neuron, never active at padding. Other layers: channel means."""
    models, npz, data = text_models
    path = models["bert"][1]
    model = onnxfault.load_model(path)
    granularity, token_rule = ("element", "any") if rule == "element" else ("channel", rule)
    got = onnxfault.localize(path, npz, granularity=granularity, token_activity=token_rule, k=3).spectrum
    names = [layer.tensor for layer in model.layers]
    session = ort.InferenceSession(expose_outputs(model.proto, names).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    logits, *values = session.run([model.output_name, *names],
                                  {"input_ids": data["input_ids"], "attention_mask": data["attention_mask"]})
    failed = logits.argmax(1) != data["y"]
    real = data["attention_mask"].astype(bool)
    columns = []
    for layer, value in zip(model.layers, values):
        if not model.is_sequence_layer(layer):
            columns.append(value.reshape(len(value), -1) if value.ndim == 2 or granularity == "element"
                           else value.mean(axis=tuple(range(1, value.ndim - 1))))
        elif rule == "element":
            columns.append(np.where(real[:, :, None], value, -np.inf).reshape(len(value), -1))
        elif rule == "any":
            columns.append(np.where(real[:, :, None], value, -np.inf).max(axis=1))
        elif rule == "mean":
            columns.append((value.astype(np.float64) * real[:, :, None]).sum(axis=1) / real.sum(axis=1)[:, None])
        else:
            columns.append(value[:, 0])
    active = np.concatenate(columns, axis=1) > 0
    a_s, a_f = (active & ~failed[:, None]).sum(0), (active & failed[:, None]).sum(0)
    want = np.stack([a_s, a_f, (~failed).sum() - a_s, failed.sum() - a_f])
    assert got.token_activity == token_rule
    assert np.array_equal(got.counts, want)


def test_data_forms_give_the_npz_counts(text_models):
    """A dict of arrays (x as {input name: array}), a DataLoader of dict batches holding their labels and
    an .npz folder of shards count exactly what one .npz does."""
    models, npz, data = text_models
    path = models["distilbert"][1]
    want = onnxfault.localize(path, npz, k=3).spectrum.counts
    inputs = {k: data[k] for k in ("input_ids", "attention_mask")}
    assert np.array_equal(onnxfault.localize(path, (inputs, data["y"]), k=3).spectrum.counts, want)
    batches = [{"input_ids": torch.from_numpy(data["input_ids"][i:i + 50]),
                "attention_mask": torch.from_numpy(data["attention_mask"][i:i + 50]),
                "labels": torch.from_numpy(data["y"][i:i + 50])} for i in range(0, len(data["y"]), 50)]
    assert np.array_equal(onnxfault.localize(path, batches, k=3).spectrum.counts, want)
    shards = npz.parent / "shards"
    shards.mkdir(exist_ok=True)
    for part, start in enumerate(range(0, len(data["y"]), 100)):
        np.savez(shards / f"part{part}.npz", **{k: v[start:start + 100] for k, v in data.items()})
    assert np.array_equal(onnxfault.localize(path, shards, k=3).spectrum.counts, want)
    first = onnxfault.localize(path, npz, k=3, data_options=onnxfault.DataOptions(limit=100)).spectrum.counts
    head = ({k: v[:100] for k, v in inputs.items()}, data["y"][:100])
    assert np.array_equal(first, onnxfault.localize(path, head, k=3).spectrum.counts)


def test_hotflip_substitutes_real_tokens_and_reports_what_onnxruntime_gives(text_models):
    """hotflip (--goal loss): at most max_flips substitutions per input, never at a special or padding position;
    the flips it counts are the tokens changed; the predictions reported are onnxruntime's on the new ids."""
    models, npz, data = text_models
    path = models["bert"][1]
    result = onnxfault.synthesize(path, npz, method="hotflip", samples=3, options={"goal": "loss", "max_flips": 3})
    a, report = result.arrays, result.report
    flips = np.asarray(report["flips"]["per_input"])
    changed = (a["input_ids"] != a["original_input_ids"]).sum(axis=1)
    assert np.array_equal(flips, changed) and flips.max() <= 3 and flips.sum() > 0
    real = a["original_attention_mask"].astype(bool)
    assert np.array_equal(a["input_ids"][~real], a["original_input_ids"][~real])
    assert np.array_equal(a["input_ids"][:, 0], a["original_input_ids"][:, 0])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input_ids": a["input_ids"], "attention_mask": a["attention_mask"]})[0]
    assert np.array_equal(a["predictions_after"], logits.argmax(1))
    # a flip is kept only when it raises the loss on the model: the loss after is above the loss before
    before = session.run(None, {"input_ids": a["original_input_ids"], "attention_mask": a["attention_mask"]})[0]
    ce = lambda z: -torch.log_softmax(torch.from_numpy(z).double(), 1)[np.arange(len(z)), a["labels"]].numpy()  # noqa: E731
    assert (ce(logits)[flips > 0] > ce(before)[flips > 0]).all()


def test_cli_localize_and_synthesize_write_projected_token_ids(text_models, tmp_path, cli):
    models, npz, _ = text_models
    path = models["bert"][1]
    result = cli("localize", path, "--data", npz, "-k", "3", "--json", tmp_path / "top.json", "--token-activity", "mean")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "top.json").read_text())["token_activity"] == "mean"
    for method in ("fgsm", "hotflip"):
        run = tmp_path / method
        result = cli("synthesize", path, "--data", npz, "--method", method, "--samples", "2", "--out", run, "-q")
        assert result.exit_code == 0, result.output
        saved = np.load(run / "inputs.npz")
        report = json.loads((run / "report.json").read_text())
        assert saved["input_ids"].dtype == np.int64 and saved["input_ids"].shape == (report["seeds"]["count"], LENGTH)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        logits = session.run(None, {"input_ids": saved["input_ids"], "attention_mask": saved["attention_mask"]})[0]
        assert np.array_equal(saved["predictions_after"], logits.argmax(1))
        assert report["token_input"] == "input_ids" and report["from"].endswith("Gather_output_0")


def _bad_data(tmp_path, data, **changes) -> str:
    arrays = {**data, **changes}
    path = tmp_path / f"bad{len(list(tmp_path.iterdir()))}.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return str(path)


@pytest.mark.parametrize("case, expected", [
    ("ids outside the vocabulary", r"data sample 7 has input_ids 120, outside the model's embedding of 120 rows \(0\.\.119\)"),
    ("mask of the wrong shape", r"data array 'attention_mask' holds samples of shape \(12\) but the model input "
                                r"'attention_mask' takes \(16\)"),
    ("missing input", r"the data lacks model input 'attention_mask'; it holds input_ids"),
    ("extra member", r"the data holds 'token_type_ids', which is not an input of the model"),
    ("float ids", r"data array 'input_ids' has type float64, but model input 'input_ids' takes int64"),
    ("one array for two inputs", r"the model has 2 inputs \(input_ids, attention_mask\) but the data holds one array"),
    ("token activity on an image model", r"token_activity applies to text models"),
    ("deepsensor on text", r"deepsensor perturbs one float input; .* on text models use deepfault, hs, fgsm, pgd, hotflip"),
    ("from a tensor that is not a lookup", r"--from .* is not an embedding lookup of 'input_ids'"),
    ("hotflip on an image model", r"hotflip runs on text models only \(an integer input of token ids\)"),
    ("unknown token rule", r"unknown token activity 'first'; use one of any, mean, cls"),
    ("unknown goal", r"hotflip: --goal must be neurons or loss \(got 'logits'\)"),
    ("no flips", r"hotflip: --max-flips must be ≥ 1 \(got 0\)"),
    ("no candidates", r"hotflip: --candidates must be ≥ 1 \(got 0\)"),
])
def test_bad_text_input_is_one_error_line_and_writes_nothing(text_models, tmp_path, cli, case, expected):
    models, npz, data = text_models
    path = models["bert"][1]
    ids = data["input_ids"].copy()
    ids[7, 2] = VOCAB
    args = {
        "ids outside the vocabulary": ["localize", path, "--data", _bad_data(tmp_path, data, input_ids=ids)],
        "mask of the wrong shape": ["evaluate", path, "--data",
                                    _bad_data(tmp_path, data, attention_mask=data["attention_mask"][:, :12])],
        "missing input": ["localize", path, "--data", _bad_data(tmp_path, data, attention_mask=None)],
        "extra member": ["localize", path, "--data",
                         _bad_data(tmp_path, data, token_type_ids=np.zeros_like(data["input_ids"]))],
        "float ids": ["localize", path, "--data", _bad_data(tmp_path, data, input_ids=ids * 1.0)],
        "one array for two inputs": ["evaluate", path, "--data",
                                     _bad_data(tmp_path, {"x": data["input_ids"], "y": data["y"]})],
        "token activity on an image model": ["localize", onnxfault_example("mnist_dense.onnx"), "--data",
                                             onnxfault_example("mnist_sample.npz"), "--token-activity", "any"],
        "deepsensor on text": ["synthesize", path, "--data", npz, "--method", "deepsensor"],
        "from a tensor that is not a lookup": ["synthesize", path, "--data", npz, "--method", "fgsm", "--from",
                                               onnxfault.load_model(path).layers[0].tensor],
        "hotflip on an image model": ["synthesize", onnxfault_example("mnist_dense.onnx"), "--data",
                                      onnxfault_example("mnist_sample.npz"), "--method", "hotflip"],
        "unknown token rule": ["localize", path, "--data", npz, "--token-activity", "first"],
        "unknown goal": ["synthesize", path, "--data", npz, "--method", "hotflip", "--goal", "logits"],
        "no flips": ["synthesize", path, "--data", npz, "--method", "hotflip", "--max-flips", "0"],
        "no candidates": ["synthesize", path, "--data", npz, "--method", "hotflip", "--candidates", "0"],
    }[case]
    out = tmp_path / "out"
    if args[0] == "synthesize":
        args += ["--out", out]
    else:
        args += ["--json", tmp_path / "out.json"]
    result = cli(*args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert __import__("re").search(expected, " ".join(result.output.split())), result.output
    assert not out.exists() and not (tmp_path / "out.json").exists()


def onnxfault_example(name: str) -> str:
    from conftest import EXAMPLES

    return str(EXAMPLES / name)


def test_compare_takes_text_models(text_models):
    models, npz, _ = text_models
    result = onnxfault.compare(models["bert"][1], models["bert"][1], npz)
    assert result.max_logit_diff == 0 and result.prediction_agreement == 1.0


def test_python_errors_name_parameters_not_flags(text_models):
    models, npz, _ = text_models
    with pytest.raises(OnnxFaultError, match="unknown token activity 'first'; use one of any, mean, cls"):
        onnxfault.localize(models["bert"][1], npz, token_activity="first")


@pytest.fixture(scope="module")
def raw_text(tmp_path_factory):
    """A tokenizer file, a BERT model over its vocabulary, and the same labelled texts as .csv, .jsonl and
    Parquet (column names 'review' and 'stars')."""
    import csv

    from foreign_models import trained_tokenizer

    root = tmp_path_factory.mktemp("raw")
    tokenizer, sentences, labels = trained_tokenizer(root / "tokenizer.json")
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=48, max_position_embeddings=40,
                                     num_labels=2)
    model = export_text(transformers.BertForSequenceClassification(config).eval(), root / "bert.onnx")
    with open(root / "reviews.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["review", "stars"])
        writer.writerows(zip(sentences, labels))
    (root / "reviews.jsonl").write_text("".join(json.dumps({"review": s, "stars": y}) + "\n"
                                                for s, y in zip(sentences, labels)))
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.table({"review": sentences, "stars": labels}), root / "reviews.parquet")
    return root, model, tokenizer, sentences, np.asarray(labels)


def test_raw_text_counts_what_tokenized_arrays_count(raw_text):
    """Texts in .csv, .jsonl and Parquet, tokenized by onnxfault, count exactly what token ids tokenized by hand
    with the same tokenizer (truncated and padded to the model's length, [PAD] 0) count from an .npz."""
    root, model, tokenizer, sentences, labels = raw_text
    tokenizer.enable_truncation(max_length=LENGTH)
    tokenizer.enable_padding(length=LENGTH, pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(sentences)
    np.savez(root / "by_hand.npz", input_ids=np.asarray([e.ids for e in encodings]),
             attention_mask=np.asarray([e.attention_mask for e in encodings]), y=labels)
    want = onnxfault.localize(model, root / "by_hand.npz", k=3).spectrum.counts
    options = onnxfault.DataOptions(tokenizer=str(root / "tokenizer.json"), text_column="review", label_column="stars")
    for name in ("reviews.csv", "reviews.jsonl", "reviews.parquet"):
        got = onnxfault.localize(model, root / name, k=3, data_options=options).spectrum
        assert got.samples == len(sentences) and np.array_equal(got.counts, want), name


def test_raw_text_synthesis_shows_decoded_texts_and_keeps_special_tokens(raw_text, tmp_path, cli):
    root, model, tokenizer, _, _ = raw_text
    run = tmp_path / "run"
    result = cli("synthesize", model, "--data", root / "reviews.csv", "--tokenizer", root / "tokenizer.json",
                 "--text-column", "review", "--label-column", "stars", "--method", "hotflip", "--goal", "loss",
                 "--samples", "2", "--out", run, "--report", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads((run / "report.json").read_text())
    saved = np.load(run / "inputs.npz")
    specials = [tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]")]
    before, after = saved["original_input_ids"], saved["input_ids"]
    assert np.array_equal(np.isin(before, specials), np.isin(after, specials))  # none moved, added or removed
    assert [t["before"] for t in report["texts"]] == tokenizer.decode_batch(before.tolist(), skip_special_tokens=True)
    assert [t["after"] for t in report["texts"]] == tokenizer.decode_batch(after.tolist(), skip_special_tokens=True)
    assert list(saved["text_after"]) == [t["after"] for t in report["texts"]]
    assert "Texts of" in (run / "report.html").read_text()


@pytest.mark.parametrize("case, expected", [
    ("not a tokenizer", r"--tokenizer .*bad\.json is not a tokenizers file"),
    ("text column absent", r"reviews\.csv has no column 'text' \(its columns: review, stars\); name the right one "
                           r"with --text-column"),
    ("texts without a tokenizer", r"reviews\.csv holds texts: give --tokenizer"),
    ("tokenizer for an npz", r"--tokenizer reads texts from a \.csv, \.jsonl or \.parquet file"),
    ("label that is not a class number", r"labels in column 'stars' .* \(labels must be class numbers 0\.\.C-1\)"),
    ("zero max length", r"--max-length must be at least 1 \(got 0\)"),
    ("max length unlike the model's", r"--max-length 8 differs from the model's sequence length 16; leave it out"),
    ("max length without a tokenizer", r"--text-column, --label-column and --max-length read raw text; add --tokenizer"),
])
def test_bad_raw_text_input_is_one_error_line(raw_text, tmp_path, cli, case, expected):
    import re

    root, model, _, _, _ = raw_text
    (tmp_path / "bad.json").write_text('{"not": "a tokenizer"}')
    (tmp_path / "words.csv").write_text("review,stars\nthe film,good\n")
    np.savez(tmp_path / "d.npz", **token_data(10))
    tokenizer = ["--tokenizer", root / "tokenizer.json"]
    args = {
        "not a tokenizer": ["--data", root / "reviews.csv", "--tokenizer", tmp_path / "bad.json", "--text-column",
                            "review", "--label-column", "stars"],
        "text column absent": ["--data", root / "reviews.csv", *tokenizer],
        "texts without a tokenizer": ["--data", root / "reviews.csv"],
        "tokenizer for an npz": ["--data", tmp_path / "d.npz", *tokenizer],
        "label that is not a class number": ["--data", tmp_path / "words.csv", *tokenizer, "--text-column", "review",
                                             "--label-column", "stars"],
        "zero max length": ["--data", root / "reviews.csv", *tokenizer, "--text-column", "review", "--label-column",
                            "stars", "--max-length", "0"],
        "max length unlike the model's": ["--data", root / "reviews.csv", *tokenizer, "--text-column", "review",
                                          "--label-column", "stars", "--max-length", "8"],
        "max length without a tokenizer": ["--data", tmp_path / "d.npz", "--max-length", "8"],
    }[case]
    result = cli("localize", model, *args, "--json", tmp_path / "out.json")
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert re.search(expected, " ".join(result.output.split())), result.output
    assert not (tmp_path / "out.json").exists()


def test_parquet_columns_and_a_hugging_face_dataset_give_the_npz_counts(text_models, tmp_path):
    """Parquet with one list column per input and the label, and a datasets.Dataset with a text column beside the
    token ids (left out), count exactly what the .npz does."""
    models, npz, data = text_models
    path = models["albert"][1]
    want = onnxfault.localize(path, npz, k=3).spectrum.counts
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"input_ids": data["input_ids"].tolist(), "attention_mask": data["attention_mask"].tolist(),
                             "label": data["y"]}), tmp_path / "tokens.parquet", row_group_size=70)
    assert np.array_equal(onnxfault.localize(path, tmp_path / "tokens.parquet", k=3).spectrum.counts, want)
    datasets = pytest.importorskip("datasets")
    table = datasets.Dataset.from_dict({"text": ["a review"] * len(data["y"]), "input_ids": data["input_ids"].tolist(),
                                        "attention_mask": data["attention_mask"].tolist(), "label": data["y"].tolist()})
    assert np.array_equal(onnxfault.localize(path, table, k=3).spectrum.counts, want)


def test_synthesize_ranks_neurons_by_the_token_rule_it_is_given(text_models):
    models, npz, _ = text_models
    path = models["roberta"][1]
    for rule in ("cls", "mean"):
        ranked = onnxfault.localize(path, npz, k=4, token_activity=rule).neurons
        run = onnxfault.synthesize(path, npz, method="deepfault", k=4, samples=1, token_activity=rule)
        assert [(n["tensor"], n["index"]) for n in run.report["neurons"]] == [(n.tensor, n.index) for n in ranked]
        assert run.report["params"]["token_activity"] == rule
    assert onnxfault.localize(path, npz, k=4, token_activity="cls").neurons != \
        onnxfault.localize(path, npz, k=4, token_activity="mean").neurons  # the rule matters
