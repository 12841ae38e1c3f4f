"""fairseq model configs derived from the layer options, and named presets as tables.

Every layer option is declared once, in :class:`~mega_fairseq.modules.config.MegaLayerConfig`.
A model family's config gets them all from :func:`layer_options_config`: the per-stack options
once per stack (``encoder_z_dim``, ``decoder_z_dim``), the others once, with the help text of the
layer config. :func:`layer_config` maps a model
config back to the ``MegaLayerConfig`` of one stack.

Presets (``--arch`` names) are a :class:`PresetTable` per family: each preset lists only what
it changes from its parent, and a family's base preset starts from the layer defaults
(:func:`layer_defaults`). The table registers the architectures, writes the help text (one
helper, :func:`preset_help`), the docs' tables and the values the tests check.
"""

from dataclasses import MISSING, dataclass, field, fields, make_dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import ARCH_CONFIG_REGISTRY, register_model_architecture
from fairseq.utils import safe_getattr

from ..modules.config import MegaConfigError, MegaLayerConfig

# Options a model config does not expose: the bias tables follow the task's max positions.
_NOT_IN_MODEL_CONFIG = ("max_positions", "max_source_positions")


def _layer_fields() -> List:
    return [f for f in fields(MegaLayerConfig) if f.name not in _NOT_IN_MODEL_CONFIG]


def option_names(prefix: str) -> Dict[str, str]:
    """Layer option -> model config field of the stack ``prefix`` (``z_dim`` -> ``decoder_z_dim``)."""
    return {f.name: f"{prefix}_{f.name}" if f.metadata["per_stack"] else f.name for f in _layer_fields()}


def derived_fields(prefixes: Sequence[str]) -> Dict[str, str]:
    """Model config fields whose default is another field's value (``decoder_ffn_embed_dim`` ->
    ``decoder_hidden_dim``)."""
    derived = {}
    for prefix in prefixes:
        names = option_names(prefix)
        derived.update({names[f.name]: names[f.metadata["same_as"]] for f in _layer_fields()
                        if f.metadata["same_as"]})
    return derived


# The layer options that every family's presets set (a family may add others): their fields are
# "set by --arch", the others keep MegaLayerConfig's defaults.
PRESET_OPTIONS = ("layers", "embed_dim", "hidden_dim", "z_dim", "n_dim", "chunk_size", "truncation_length",
                  "rel_pos_bias", "normalize_before", "dropout", "attention_dropout", "hidden_dropout",
                  "activation_dropout")


def layer_defaults(prefixes: Sequence[str], options: Iterable[str] = PRESET_OPTIONS) -> Dict[str, Any]:
    """MegaLayerConfig's defaults of ``options`` as the model config fields of the stacks
    ``prefixes`` (``{"decoder_z_dim": 128, "dropout": 0.1, ...}``): where a family's base preset
    starts, so that it lists only what it changes."""
    defaults = {f.name: f.default for f in _layer_fields()}
    return {option_names(prefix)[option]: defaults[option] for prefix in prefixes for option in options}


def preset_help(base_name: str, base_preset: Dict[str, Any], field_name: str, text: str) -> Dict[str, str]:
    """The metadata of a config field that presets set: its help says so and quotes the base
    preset's value (a family binds the first two: ``partial(preset_help, "mega_lm", BASE)``)."""
    return {"help": f"{text} (set by --arch; {base_name}: {base_preset[field_name]})"}


@dataclass
class TokenEmbeddingOptions(FairseqDataclass):
    """The token-embedding options every Mega model family with a token input shares."""

    normalize_embedding: bool = field(default=False, metadata={"help": "normalise the scaled token embeddings"})
    no_scale_embedding: bool = field(default=False, metadata={"help": "do not scale embeddings by sqrt(d)"})
    share_decoder_input_output_embed: bool = field(
        default=False, metadata={"help": "tie the decoder's input embedding and output projection"})


def layer_options_config(name: str, prefixes: Sequence[str], base_preset: Dict[str, Any],
                         base_name: str, base: type = FairseqDataclass) -> type:
    """A ``FairseqDataclass`` holding every layer option of the stacks ``prefixes``.

    Fields that presets set (and derived fields) default to None, "set by --arch": the arch
    functions fill what the command line left unset, and the help text shows the base preset's
    value. The other fields keep the layer config's default.
    """
    specs: List[Tuple[str, Any, Any]] = []
    derived = derived_fields(prefixes)
    for prefix_index, prefix in enumerate(prefixes):
        for layer_field in _layer_fields():
            per_stack = layer_field.metadata["per_stack"]
            if not per_stack and prefix_index > 0:
                continue
            config_name = option_names(prefix)[layer_field.name]
            help_text = layer_field.metadata["help"]
            if per_stack and len(prefixes) > 1:
                help_text = f"{prefix}: {help_text}"
            choices = layer_field.metadata["choices"]
            field_type = ChoiceEnum(list(choices)) if choices else layer_field.type
            default = layer_field.default
            if config_name in derived:
                default, field_type = None, Optional[field_type]
            elif config_name in base_preset:
                default, field_type = None, Optional[field_type]
                help_text = preset_help(base_name, base_preset, config_name, help_text)["help"]
            specs.append((config_name, field_type, field(default=default, metadata={"help": help_text})))
    return make_dataclass(name, specs, bases=(base,))


def layer_config(cfg, prefix: str, max_positions: int, max_source_positions: int = 0) -> MegaLayerConfig:
    """The ``MegaLayerConfig`` of the stack ``prefix`` (``encoder`` or ``decoder``) of a model config."""
    names = option_names(prefix)
    values = {option: getattr(cfg, name) for option, name in names.items()}
    values = {option: str(value) if option in _CHOICE_OPTIONS else value for option, value in values.items()}
    try:
        return MegaLayerConfig(max_positions=max_positions, max_source_positions=max_source_positions, **values)
    except MegaConfigError as error:
        flag = "--" + names.get(error.field, error.field).replace("_", "-")
        raise ValueError(f"{flag} {error.problem}") from None


_CHOICE_OPTIONS = {f.name for f in fields(MegaLayerConfig) if f.metadata["choices"]}


@dataclass(frozen=True)
class Preset:
    """A named architecture: its parent preset (None for the family's base) and what it changes."""

    parent: Optional[str]
    values: Dict[str, Any]
    notes: str = ""
    alias_of: Optional[str] = None


def alias(name: str) -> Preset:
    return Preset(parent=name, values={}, alias_of=name)


class PresetTable:
    """The named architectures of one model family, resolved through their parents."""

    def __init__(self, model_name: str, config_class: type, presets: Dict[str, Preset],
                 derived: Dict[str, str]):
        self.model_name = model_name
        self.config_class = config_class
        self.presets = presets
        self.derived = derived
        if presets[model_name].parent is not None:
            raise ValueError(f"the base preset {model_name} has no parent")
        # a field a preset sets must default to None, or configs merged with the class defaults
        # (fairseq-hydra-train) would keep the default instead of the preset's value
        defaults = {f.name: f.default for f in fields(config_class)}
        for name, preset in presets.items():
            for field_name in preset.values:
                if defaults.get(field_name, MISSING) is not None:
                    raise ValueError(f"preset {name} sets {field_name}, whose default in {config_class.__name__} "
                                     f"is not None")

    def explicit(self, name: str) -> Dict[str, Any]:
        """The values the preset and its ancestors set."""
        preset = self.presets[name]
        values = {} if preset.parent is None else self.explicit(preset.parent)
        values.update(preset.values)
        return values

    def resolve(self, name: str) -> Dict[str, Any]:
        """Every value the preset sets, derived fields included."""
        values = self.explicit(name)
        for derived, source in self.derived.items():
            values.setdefault(derived, values.get(source))
        return values

    def apply(self, name: str, cfg):
        """Fill every field of ``cfg`` that is missing or None: from the preset, then from the
        plain defaults of the config class; a derived field not set by the preset follows its
        source's final value (``--decoder-hidden-dim 64`` also sets the FFN size)."""
        values = self.explicit(name)
        for config_field in fields(self.config_class):
            if config_field.name in values:
                _set_default(cfg, config_field.name, values[config_field.name])
            elif config_field.name not in self.derived and config_field.default is not MISSING \
                    and not _is_interpolation(config_field.default):
                _set_default(cfg, config_field.name, config_field.default)
        for derived, source in self.derived.items():
            _set_default(cfg, derived, getattr(cfg, source))

    def register(self):
        """Registers every preset as an ``--arch``; the base name too (fairseq registers a no-op
        for it), so that a checkpoint saved with any --arch holds concrete values."""
        for name in self.presets:
            fn = self._arch_function(name)
            if name == self.model_name:
                ARCH_CONFIG_REGISTRY[name] = fn
            else:
                register_model_architecture(self.model_name, name)(fn)

    def _arch_function(self, name: str) -> Callable:
        def arch(cfg):
            self.apply(name, cfg)

        arch.__name__ = name
        arch.__doc__ = self.presets[name].notes
        return arch

    def markdown(self, columns: Iterable[Tuple[str, Callable[[Dict[str, Any]], Any]]]) -> str:
        """A Markdown table for the docs: one row per preset, ``columns`` as (title, value of resolved preset)."""
        columns = list(columns)
        lines = ["| `--arch` | " + " | ".join(title for title, _ in columns) + " | notes |",
                 "|---" * (len(columns) + 2) + "|"]
        aliases = {}
        for name, preset in self.presets.items():
            if preset.alias_of:
                aliases.setdefault(preset.alias_of, []).append(name)
        for name, preset in self.presets.items():
            if preset.alias_of:
                continue
            values = self.resolve(name)
            label = f"`{name}`" + "".join(f" (`{other}`)" for other in aliases.get(name, []))
            cells = [str(fn(values)) for _, fn in columns]
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {preset.notes} |")
        return "\n".join(lines)


def size_columns(prefix: str) -> List[Tuple[str, Callable[[Dict[str, Any]], Any]]]:
    """Table columns of one stack's sizes (for ``PresetTable.markdown``)."""
    return [
        ("d", lambda v: v[f"{prefix}_embed_dim"]), ("v (hidden)", lambda v: v[f"{prefix}_hidden_dim"]),
        ("ffn", lambda v: v[f"{prefix}_ffn_embed_dim"]), ("z", lambda v: v[f"{prefix}_z_dim"]),
        ("N", lambda v: v[f"{prefix}_n_dim"]),
        ("chunk", lambda v: "full" if v[f"{prefix}_chunk_size"] < 0 else v[f"{prefix}_chunk_size"]),
    ]


# table columns of the options shared by the stacks
SHARED_COLUMNS = [
    ("norm", lambda v: "prenorm" if v["normalize_before"] else "postnorm"),
    ("dropout (attn, hidden, FFN)", lambda v: f"{v['dropout']} ({v['attention_dropout']}, {v['hidden_dropout']}, "
                                              f"{v['activation_dropout']})"),
]


def _is_interpolation(value) -> bool:
    return isinstance(value, str) and value.startswith("${")


def _set_default(cfg, name: str, value):
    if safe_getattr(cfg, name, None) is None:
        setattr(cfg, name, value)
