"""segassist ML backend: a Label Studio ML backend serving segmentation engines."""
