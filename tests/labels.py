"""Labels the real models give the scikit-image photographs (the classifier: Tiny-ImageNet-200 classes)."""

# chelsea.jpg is a tabby cat; the fine-tune answers "tabby" (and confuses it with "Egyptian cat" most often).
CATS = frozenset({"tabby", "Egyptian cat", "Persian cat"})
