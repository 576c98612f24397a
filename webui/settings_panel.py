"""Per-session answer settings: retrieval depth, fusion weights, relevance threshold, generation parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from rag.config import Settings
from rag.filters import DocumentFilter
from rag.llm.base import GenerationParams
from rag.service import RagService
from webui.i18n import Relabeler, t

if TYPE_CHECKING:
    from rag.chat import ChatOptions


@dataclass(frozen=True, slots=True)
class SettingsDefaults:
    top_k: int
    bm25_weight: float
    dense_weight: float
    relevance_threshold: float
    temperature: float
    max_tokens: int

    @classmethod
    def from_settings(cls, settings: Settings) -> SettingsDefaults:
        retrieval, llm = settings.retrieval, settings.llm
        return cls(
            retrieval.chat_top_k,
            retrieval.bm25_weight,
            retrieval.dense_weight,
            retrieval.relevance_threshold,
            llm.temperature,
            llm.max_tokens,
        )

    def values(self) -> list[Any]:
        """In the order of SettingsPanel.inputs."""
        return [
            self.top_k,
            False,
            self.bm25_weight,
            self.dense_weight,
            self.relevance_threshold,
            self.temperature,
            self.max_tokens,
        ]


@dataclass
class SettingsPanel:
    top_k: gr.Slider
    custom_fusion: gr.Checkbox
    bm25_weight: gr.Slider
    dense_weight: gr.Slider
    threshold: gr.Slider
    temperature: gr.Slider
    max_tokens: gr.Slider
    reset: gr.Button

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [
            self.top_k,
            self.custom_fusion,
            self.bm25_weight,
            self.dense_weight,
            self.threshold,
            self.temperature,
            self.max_tokens,
        ]


def build_settings_panel(defaults: SettingsDefaults, text: Relabeler, lang: str = "en") -> SettingsPanel:
    with text.bind(gr.Accordion(t(lang, "settings"), open=True, elem_id="settings-panel"), label="settings"):
        top_k = text.bind(
            gr.Slider(1, 20, value=defaults.top_k, step=1, label=t(lang, "top_k"), elem_id="setting-top-k"),
            label="top_k",
        )
        custom_fusion = text.bind(
            gr.Checkbox(False, label=t(lang, "custom_fusion"), info=t(lang, "custom_fusion_info")),
            label="custom_fusion",
            info="custom_fusion_info",
        )
        bm25_weight = text.bind(
            gr.Slider(
                0.0,
                2.0,
                value=defaults.bm25_weight,
                step=0.1,
                label=t(lang, "bm25_weight"),
                interactive=False,
            ),
            label="bm25_weight",
        )
        dense_weight = text.bind(
            gr.Slider(
                0.0,
                2.0,
                value=defaults.dense_weight,
                step=0.1,
                label=t(lang, "dense_weight"),
                interactive=False,
            ),
            label="dense_weight",
        )
        threshold = text.bind(
            gr.Slider(
                0.0,
                1.0,
                value=defaults.relevance_threshold,
                step=0.01,
                label=t(lang, "threshold"),
                info=t(lang, "threshold_info"),
            ),
            label="threshold",
            info="threshold_info",
        )
        temperature = text.bind(
            gr.Slider(0.0, 1.5, value=defaults.temperature, step=0.05, label=t(lang, "temperature")),
            label="temperature",
        )
        max_tokens = text.bind(
            gr.Slider(
                16,
                2048,
                value=defaults.max_tokens,
                step=16,
                label=t(lang, "max_tokens"),
                elem_id="setting-max-tokens",
            ),
            label="max_tokens",
        )
        reset = text.bind(gr.Button(t(lang, "reset"), size="sm"), value="reset")
    panel = SettingsPanel(
        top_k, custom_fusion, bm25_weight, dense_weight, threshold, temperature, max_tokens, reset
    )
    custom_fusion.change(
        lambda on: (gr.update(interactive=on), gr.update(interactive=on)),
        inputs=custom_fusion,
        outputs=[bm25_weight, dense_weight],
        queue=False,
    )
    reset.click(lambda: defaults.values(), outputs=panel.inputs, queue=False)
    return panel


def chat_options(
    service: RagService,
    top_k: float,
    custom_fusion: bool,
    bm25_weight: float,
    dense_weight: float,
    threshold: float,
    temperature: float,
    max_tokens: float,
    filter: DocumentFilter | None = None,
) -> ChatOptions:
    """The panel's values (in SettingsPanel.inputs order), and a filter, as the answer pipeline's options."""
    base = service.generation_defaults()
    params = GenerationParams(
        temperature=float(temperature),
        top_p=base.top_p,
        top_k=base.top_k,
        max_tokens=int(max_tokens),
        repetition_penalty=base.repetition_penalty,
    )
    return service.chat_options(
        top_k=int(top_k),
        relevance_threshold=float(threshold),
        bm25_weight=float(bm25_weight) if custom_fusion else None,
        dense_weight=float(dense_weight) if custom_fusion else None,
        params=params,
        filter=filter,
    )
