"""Models: decoder LLM, graph VAE, datacube CNN-ViT, and the multimodal fusion model."""
