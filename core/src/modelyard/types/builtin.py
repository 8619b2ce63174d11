"""Core's own plugin: the seven model types and the builtin catalogue, registered through the
same hooks any plugin uses."""

from modelyard import catalogue, hookimpl
from modelyard.types.audio import AUDIO
from modelyard.types.embedding import EMBEDDING
from modelyard.types.flexible import FLEXIBLE
from modelyard.types.image import IMAGE
from modelyard.types.llm import LLM
from modelyard.types.rerank import RERANK
from modelyard.types.video import VIDEO

modelyard_contract = 1  # the plugin contract this plugin is written for


@hookimpl
def register_model_types(register):
    for model_type in (LLM, EMBEDDING, RERANK, IMAGE, AUDIO, VIDEO, FLEXIBLE):
        register(model_type)


@hookimpl
def register_models(register):
    for model_type in catalogue.FILES:
        for family in catalogue.load(model_type):
            register(model_type, family)
