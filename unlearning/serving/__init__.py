"""Serving: a model version with its runtime filters (stack), one decode loop for every stored
format (decoding), the filters (filters.<name>), their targets (targets) and the sentence encoder
they compare with (encoder). Pure ML code: no Django. The OpenAI-compatible endpoint that serves it
over HTTP is unlearning.endpoint, in a process of its own (config/serving_wsgi.py), never the web
process's.
"""
