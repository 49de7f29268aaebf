"""The explanation check (``explain-check``): how far each heatmap method can be trusted on a model, by
parameter randomisation, faithfulness (ROAD) and lung energy."""
