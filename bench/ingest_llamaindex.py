"""LlamaIndex's ingestion of the same folder with the same embedding model, for bench/ingest.py.

Runs in a separate venv, so that neither project's pins move the other's (LlamaIndex 0.14):

    python3 -m venv /work/li-venv
    /work/li-venv/bin/pip install torch==2.13.0
    /work/li-venv/bin/pip install "llama-index-core>=0.14,<0.15" llama-index-readers-file \
        llama-index-embeddings-huggingface llama-index-vector-stores-faiss faiss-cpu
    /work/li-venv/bin/python bench/ingest_llamaindex.py CORPUS_DIR MODEL_DIR [THREADS]

SimpleDirectoryReader (pypdf for PDFs) + SentenceSplitter(512, 50) + HuggingFaceEmbedding on the local model folder
(its default batch of 10) + a flat FAISS index: LlamaIndex's documented defaults. Prints one JSON line. Chunks longer
than the model's window are truncated by the embedder; their count is reported.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main(corpus: str, model_dir: str, threads: int | None) -> dict:
    import faiss
    import llama_index.core
    import torch
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import MetadataMode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.faiss import FaissVectorStore

    if threads:
        torch.set_num_threads(threads)
    embed = HuggingFaceEmbedding(model_name=model_dir, device="cpu")
    embed.get_text_embedding("warm-up")  # model load is not ingestion
    started, cpu = time.perf_counter(), time.process_time()
    documents = SimpleDirectoryReader(corpus, recursive=True).load_data()
    parse_seconds = time.perf_counter() - started
    nodes = SentenceSplitter(chunk_size=512, chunk_overlap=50).get_nodes_from_documents(documents)
    storage = StorageContext.from_defaults(vector_store=FaissVectorStore(faiss_index=faiss.IndexFlatL2(384)))
    VectorStoreIndex(nodes, storage_context=storage, embed_model=embed)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu

    pages = sum(d.metadata.get("file_name", "").endswith(".pdf") for d in documents)  # its PDF reader: a page each
    model = embed._model
    window = model.max_seq_length - model.tokenizer.num_special_tokens_to_add(pair=False)
    texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
    tokens = [len(ids) for ids in model.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]
    return {
        "llama_index_core": llama_index.core.__version__, "documents": len(documents), "chunks": len(nodes),
        "pdf_pages": pages, "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
        "parse_seconds": round(parse_seconds, 2), "pages_per_s": round(pages / wall, 2),
        "chunks_per_s": round(len(nodes) / wall, 2), "chunks_per_cpu_s": round(len(nodes) / cpu, 2),
        "embed_batch_size": embed.embed_batch_size, "mean_chunk_tokens": round(sum(tokens) / max(1, len(tokens)), 1),
        "max_chunk_tokens": max(tokens, default=0), "embedder_window": window,
        "chunks_truncated": sum(t > window for t in tokens), "torch_threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)))
