"""Networks of engines (AI-agent workflows): the model, its fluid dynamics, a simulator, classic examples."""
