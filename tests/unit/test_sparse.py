from librarian.embedding.sparse import document_vector, query_vector, term_id, terms


def test_terms_drop_stopwords_and_case() -> None:
    assert terms("The Tomato and THE tomatoes of Spain") == ["tomato", "tomatoes", "spain"]


def test_document_weights_saturate_with_term_frequency() -> None:
    indices, values = document_vector("tomato " * 1 + "basil " * 10)
    weight = dict(zip(indices, values, strict=True))
    assert weight[term_id("basil")] > weight[term_id("tomato")]
    assert weight[term_id("basil")] < 10 * weight[term_id("tomato")]  # saturation, not linear
    assert indices == sorted(set(indices))


def test_query_vector_is_one_per_distinct_term() -> None:
    indices, values = query_vector("tomato Tomato sauce")
    assert len(indices) == 2 and values == [1.0, 1.0]


def test_empty_text_gives_an_empty_vector() -> None:
    assert document_vector("the of and") == ([], [])
