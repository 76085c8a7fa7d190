from seqstruct.evaluation.finetune import epochs_for


def test_epochs_for_raises_epochs_only_where_min_steps_asks() -> None:
    assert epochs_for(1000, 32, 3.0, 0) == 3.0  # no minimum: the epochs asked
    assert epochs_for(1000, 32, 3.0, 50) == 3.0  # 32 steps an epoch: 3 epochs are 96 steps
    assert epochs_for(100, 32, 3.0, 50) == 13.0  # 4 steps an epoch: 13 epochs reach 52 >= 50
    assert epochs_for(100, 32, 20.0, 50) == 20.0  # never fewer than asked
    assert epochs_for(0, 32, 3.0, 50) == 3.0
