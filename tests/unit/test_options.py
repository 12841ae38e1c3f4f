"""python -m mega_fairseq.options lists every option of an arch (with the arch's value, the default
and the help text), every option of a task, and the registered archs per model family; the values
it lists are the ones fairseq-train gives the model."""

import contextlib
import io
import re

import pytest

from mega_fairseq import options
from mega_fairseq.models.mega_classifier import CLASSIFIER_PRESETS, MegaClassifierConfig
from mega_fairseq.tasks.mega_sequence_classification import SequenceClassificationConfig


@pytest.fixture(scope="module")
def listed():
    """The output of the command (its main, in this process; test_readme.py runs the command), in
    sections: the arch list, the arch's options, the task's options."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        options.main(["--list-archs", "--arch", "mega_lra_text", "--task", "mega_sequence_classification"])
    return out.getvalue().strip().split("\n\n")


def rows(section):
    """{flag: [cells]} of a table (columns two or more spaces apart; the help text last)."""
    lines = section.splitlines()[1:]  # the section's title
    return {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line, maxsplit=3) for line in lines[1:])}


def flags(config_class):
    """The flags fairseq makes of a config's fields (those with a help text: the others are set from
    other configs)."""
    return {"--" + f.replace("_", "-") for f, spec in config_class.__dataclass_fields__.items()
            if spec.metadata.get("help") and f != "data"}


def test_arch_options_with_the_preset_value_the_default_and_the_help(listed):
    title, header = listed[1].splitlines()[:2]
    assert title.startswith("--arch mega_lra_text (model mega_classifier")
    assert re.split(r"\s{2,}", header) == ["option", "mega_lra_text", "default (--arch mega_classifier)", "help"]
    table = rows(listed[1])
    assert set(table) == flags(MegaClassifierConfig)
    resolved, base = CLASSIFIER_PRESETS.resolve("mega_lra_text"), CLASSIFIER_PRESETS.resolve("mega_classifier")
    for name, value in resolved.items():
        assert table["--" + name.replace("_", "-")][:2] == [str(value), str(base[name])], name
    assert table["--encoder-layers"][:2] == ["4", "6"]  # the paper's Text preset against the family's base
    assert table["--normalization-type"][0] == "scalenorm"
    assert table["--normalization-type"][2].startswith("normalisation layer") and "choices: layernorm" in \
        table["--normalization-type"][2]
    assert table["--feature-dropout"] == ["False", "False", "drop whole channels instead of elements"]


def test_task_options_with_their_defaults_and_help(listed):
    assert listed[2].splitlines()[0].startswith("--task mega_sequence_classification")
    table = rows(listed[2])
    assert set(table) - {"DATA"} == flags(SequenceClassificationConfig)
    assert table["--input-type"][0] == "tokens"
    assert table["--input-type"][1].endswith("(choices: tokens, bytes, pixels, waveform)")
    assert table["--num-classes"][0] == "2"


def test_archs_listed_per_family(listed):
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY

    families = {}
    for line in listed[0].splitlines():
        if not line.startswith(" "):
            family = line.split(":")[0]
            families[family] = []
        else:
            families[family].append(line.split()[0])
    assert set(families) == {"mega_lm", "mega", "mega_classifier"}
    for family, archs in families.items():
        assert archs == [a for a, model in ARCH_MODEL_NAME_REGISTRY.items() if model == family]
    assert re.search(r"^  mega_lm_wiki103 +$", listed[0], re.M) is None  # aliases say what they stand for
    assert re.search(r"^  mega_lm_wiki103 += mega_lm_adaptive_big$", listed[0], re.M)


@pytest.mark.parametrize("arch,task", [("mega_lra_text", "mega_sequence_classification"),
                                       ("mega_lm_wiki103", "mega_language_modeling"),
                                       ("mega_wmt_en_de_big", "translation")])
def test_listed_values_are_what_fairseq_train_gives_the_model(arch, task):
    """fairseq-train's own parsing (the arch function applied, then the config's defaults)."""
    from fairseq import options as fairseq_options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = fairseq_options.get_training_parser()
    model = convert_namespace_to_omegaconf(fairseq_options.parse_args_and_arch(
        parser, ["data", "--task", task, "--arch", arch])).model
    listed = options.arch_options(arch)
    assert len(listed) > 20
    for option in listed:
        trained = model[option.flag[2:].replace("-", "_")]
        trained = getattr(trained, "value", trained)
        assert trained == option.value or str(trained) == str(option.value), option.flag


def test_unknown_arch_suggests_close_names(capsys):
    with pytest.raises(SystemExit, match=r"unknown --arch 'mega_lra_txt'; did you mean mega_lra_text"):
        options.main(["--arch", "mega_lra_txt"])
