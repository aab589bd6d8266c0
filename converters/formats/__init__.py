"""Format readers and writers around the one model; each module imports only the model and the codecs."""
