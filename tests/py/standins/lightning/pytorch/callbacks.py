"""Stand-ins of lightning.pytorch.callbacks: the Callback base and EarlyStopping (which
here only records what it would monitor)."""


class Callback:
    pass


class EarlyStopping(Callback):
    def __init__(self, monitor, mode="min", strict=True, **kwargs):
        self.monitor, self.mode, self.strict = monitor, mode, strict

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.seen = trainer.callback_metrics.get(self.monitor)
