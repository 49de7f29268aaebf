"""Documents generated from the artifacts: the README's fact blocks, the model card and the comparison facts,
so no number is typed by hand."""
