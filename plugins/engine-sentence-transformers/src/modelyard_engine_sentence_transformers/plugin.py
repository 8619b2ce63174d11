"""The shim: registers the sentence_transformers engine for embedding and rerank. Imports no ML library."""

from modelyard import hookimpl
from modelyard.engines import Engine

modelyard_contract = 1  # the plugin contract this plugin is written for


IMPLEMENTATIONS = {"embedding": "modelyard_engine_sentence_transformers.engines:SentenceTransformerEmbedding",
                   "rerank": "modelyard_engine_sentence_transformers.engines:CrossEncoderRerank"}


@hookimpl
def register_engines(register):
    for model_type, impl in IMPLEMENTATIONS.items():  # one engine, one class per type
        register(Engine(
            name="sentence_transformers",
            model_types=(model_type,),
            formats=("pytorch",),
            impl=impl,
            requirements=("sentence-transformers>=3",),
            aliases=("sentence-transformers",),
            priority=10,
        ))
