"""Media and file decoding shared by the adapters: audio (WAV -> spectrogram), video and image
frames, ``.npy`` and restricted pickle files, and the audio-visual loaders built from them."""
