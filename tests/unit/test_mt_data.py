"""The helpers of mega_fairseq.data.mt that the WMT16 scripts run, on hand-written text: fetching the
evaluation sets through sacrebleu, the compound splitting of tokenized BLEU, tokenized BLEU against
sacrebleu and against multi-bleu.perl worked by hand."""

import math

import pytest

from mega_fairseq.data import mt as mt_data


def test_fetch_eval_sets_through_sacrebleu(tmp_path, monkeypatch):
    import sacrebleu.utils

    fetched = {}
    for name, lines in (("wmt13.en", ["A.", "B."]), ("wmt13.de", ["A-de.", "B-de."]),
                        ("wmt14.en", ["C.\r"]), ("wmt14.de", ["C-de."])):
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    def source(test_set, langpair):
        fetched[test_set] = langpair
        return str(tmp_path / f"{test_set[:5]}.{langpair[:2]}")

    monkeypatch.setattr(sacrebleu.utils, "get_source_file", source)
    monkeypatch.setattr(sacrebleu.utils, "get_reference_files",
                        lambda test_set, langpair: [str(tmp_path / f"{test_set[:5]}.{langpair[3:]}")])
    mt_data.main(["fetch-eval", str(tmp_path / "raw")])
    # newstest2013 and the full newstest2014 (3003 sentences; sacrebleu's "wmt14" is the filtered one)
    assert fetched == {"wmt13": "en-de", "wmt14/full": "en-de"}
    assert (tmp_path / "raw" / "valid.de").read_text(encoding="utf-8") == "A-de.\nB-de.\n"
    assert (tmp_path / "raw" / "test.en").read_text(encoding="utf-8") == "C.\n"


def test_compound_split_matches_the_perl_rule():
    # perl -ple 's{(\S)-(\S)}{$1 ##AT##-##AT## $2}g'
    assert mt_data.compound_split("a-b-c e-mail x - y") == "a ##AT##-##AT## b-c e ##AT##-##AT## mail x - y"


def test_bleu_identical_is_100():
    lines = ["Die E-Mail kam gestern an.", "„Gut“, sagte sie."]
    assert mt_data.tokenized_bleu(lines, lines, "de").score == pytest.approx(100.0)
    score, signature = mt_data.sacre_bleu(lines, lines)
    assert score.score == pytest.approx(100.0) and "tok:13a" in signature and "nrefs:1" in signature


def test_tokenized_bleu_against_sacrebleu_directly():
    import sacrebleu

    hyps = ["Die alte E-Mail-Adresse ist weg, sagte er.", "Der Hund sieht den Baum."]
    refs = ["Die alte E-Mail-Adresse war weg, sagte er.", "Der Hund sah den großen Baum."]
    # Moses tokenisation (punctuation split off, hyphens kept), then compound splitting, by hand
    hyps_tok = ["Die alte E ##AT##-##AT## Mail ##AT##-##AT## Adresse ist weg , sagte er .",
                "Der Hund sieht den Baum ."]
    refs_tok = ["Die alte E ##AT##-##AT## Mail ##AT##-##AT## Adresse war weg , sagte er .",
                "Der Hund sah den großen Baum ."]
    assert mt_data.tokenize_for_bleu(hyps, "de") == hyps_tok
    assert mt_data.tokenize_for_bleu(refs, "de") == refs_tok
    direct = sacrebleu.corpus_bleu(hyps_tok, [refs_tok], tokenize="none", smooth_method="none")
    score = mt_data.tokenized_bleu(hyps, refs, "de").score
    assert score == pytest.approx(direct.score) and 0 < score < 100
    # multi-bleu.perl by hand: 19 hypothesis and 20 reference tokens; the two sentences match
    # 12+5 unigrams, 10+2 bigrams, 8+0 trigrams and 6+0 4-grams
    precisions = [17 / 19, 12 / 17, 8 / 15, 6 / 13]
    by_hand = 100 * math.exp(1 - 20 / 19) * math.prod(precisions) ** 0.25
    assert score == pytest.approx(by_hand, rel=1e-9)
