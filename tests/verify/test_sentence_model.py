"""The sentence verifier with a sentence-transformers model (built here, tiny, random weights):
the embedding threshold, sequences, a model published to S3, bad model folders. Not in the fast
tier: it builds a model and starts an S3 server."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_verify import check

from videostar.config import VerifyConfig

ST_WORDS = ["the", "a", "man", "woman", "dog", "walks", "runs", "left", "right", "ball", "kicks",
            "red", "blue", "jumps"]


@pytest.fixture(scope="module")
def sentence_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-init sentence-transformers model (1-layer BERT, mean pooling) with a word
    vocabulary, built here: it checks the wiring and the threshold logic, not semantics."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("sentence-model")
    raw, out = root / "bert", root / "st"
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *ST_WORDS])}
    tokenizer = BertTokenizerFast(vocab=vocab)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=64)).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    modules = [Transformer(str(raw), max_seq_length=32), Pooling(32, "mean")]
    SentenceTransformer(modules=modules, device="cpu").save(str(out))
    return out


def _cosine(model_dir: Path, a: str, b: str) -> float:
    from sentence_transformers import SentenceTransformer

    emb = SentenceTransformer(str(model_dir), device="cpu").encode([a, b], normalize_embeddings=True)
    return float(emb[0] @ emb[1])


def test_sentence_model_similarity_and_threshold(sentence_model: Path) -> None:
    gt, other = "the man walks left", "the dog runs right"
    cfg = VerifyConfig(sentence_model=str(sentence_model))
    same = check("sentence", f"A ball. {gt.capitalize()}.", gt, cfg=cfg)
    assert same.passed and same.reason == "all 1 sentences found (embedding similarity >= 0.6)"
    sim = _cosine(sentence_model, gt, other + ".")
    assert 0 < sim < 0.999  # random weights: some similarity, not identity
    above = VerifyConfig(sentence_model=str(sentence_model), sentence_threshold=sim + 1e-3)
    below = VerifyConfig(sentence_model=str(sentence_model), sentence_threshold=sim - 1e-3)
    verdict = check("sentence", other + ".", gt, cfg=above)
    assert not verdict.passed and f"best embedding similarity {sim:.2f}" in verdict.reason
    assert check("sentence", other + ".", gt, cfg=below).passed
    assert "lexical" in check("sentence", other + ".", gt).reason  # the default is unchanged


def test_sentence_model_in_sequences(sentence_model: Path) -> None:
    cfg = VerifyConfig(sentence_model=str(sentence_model), sequence_threshold=0.999)
    value = ["The man walks left.", "The dog jumps."]  # as written: identical embeddings
    assert check("sentence_sequence", "The man walks left. The dog jumps.", value, cfg=cfg).passed
    verdict = check("sentence_sequence", "The dog jumps. The man walks left.", value, cfg=cfg)
    assert not verdict.passed and "before" in verdict.reason


def test_sentence_model_from_s3_and_bad_folders(sentence_model: Path, tmp_path: Path,
                                                moto_endpoint: str, monkeypatch) -> None:
    from conftest import S3_ENV

    from videostar import store
    from videostar.errors import VideostarError

    for key, value in {**S3_ENV, "VIDEOSTAR_S3_ENDPOINT": moto_endpoint,
                       "VIDEOSTAR_CACHE": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(key, value)
    store.client().make_bucket("sentence-models")
    uri = store.open_store("s3://sentence-models").publish(sentence_model, "tiny-st")
    cfg = VerifyConfig(sentence_model=uri)
    assert check("sentence", "The man walks left.", "the man walks left", cfg=cfg).passed
    with pytest.raises(VideostarError, match="model folder not found"):
        check("sentence", "x.", "the man", cfg=VerifyConfig(sentence_model=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideostarError, match="not a sentence-transformers model"):
        check("sentence", "x.", "the man", cfg=VerifyConfig(sentence_model=str(tmp_path / "empty")))
