from suite.models.architectures import ARCHITECTURES, tokenizer


def test_clip_tokenizer_matches_openai_ids():
    tok = tokenizer(ARCHITECTURES["sd-v1"])
    assert len(tok) == 49408
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok.model_max_length == 77


def test_tokenizer_lowercases_as_the_article_says():
    for arch in ("sd-v1", "sd-v2.1"):
        tok = tokenizer(ARCHITECTURES[arch])
        assert tok("NO WAR banner").input_ids == tok("no war banner").input_ids


def test_sd2_pads_with_an_exclamation_mark():
    ids = tokenizer(ARCHITECTURES["sd-v2.1"])("hi", padding="max_length").input_ids
    assert len(ids) == 77 and ids[3:] == [0] * 74  # "!" is token 0
    ids = tokenizer(ARCHITECTURES["sd-v1"])("hi", padding="max_length").input_ids
    assert ids[3:] == [49407] * 74
