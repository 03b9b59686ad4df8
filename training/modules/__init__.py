"""The network pieces and the LightningModule that trains them."""
