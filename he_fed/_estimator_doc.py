"""The estimators' shared numpydoc: their parameters and fitted attributes."""

from __future__ import annotations

__all__ = ["PARAMS_DOC"]

#: Appended to both federated estimators' docstrings.
PARAMS_DOC = """
    Parameters
    ----------
    scheme : str or Scheme, default="paillier-packed"
        Encryption scheme: ``"paillier-packed"``, ``"paillier"``, ``"ckks"``, or
        ``"plain"``. A name builds the scheme with ``clip``, ``key_bits``
        (Paillier) or ``ckks_preset`` (CKKS), ``max_weight``, and
        ``max_clients`` set to the number of groups. A :class:`Scheme` instance is
        used as given. ``"plain"`` is the insecure, unencrypted baseline.
    rounds : int, default=20
        Training rounds.
    local_epochs : int, default=5
        Epochs each client trains per round (1 with full batches is FedSGD).
    learning_rate : float or None, default=None
        Clients' step size on standardised data. None means 0.5 for logistic and
        0.1 for linear regression, which converge on all the built-in datasets.
    alpha : float, default=1e-4
        L2 penalty.
    batch_size : int or None, default=None
        Clients' mini-batch size; None is full batch.
    clip : float, default=4.0
        Each value of an update is clipped to ``[-clip, clip]`` before encryption.
    max_weight : int or None, default=None
        Largest sample count a client may hold (part of the encoding plan). None
        takes the smallest power of two that holds the largest group: fine in a
        simulation, which knows every size; a deployment declares a public bound
        instead, since a tight plan hints at the largest client's size.
    server_lr : float, default=1.0
        Server step applied to the mean update.
    min_clients : int, optional
        The key holder decrypts no aggregate of fewer contributions. Default: a
        majority of the clients (at least 2), so that no aggregate is far from
        the whole federation's.
    standardize : bool, default=True
        Standardise features with federated statistics computed from encrypted sums.
    dropout : float, default=0.0
        Probability that a client sits out a round.
    key_bits : int, default=2048
        Paillier modulus size.
    ckks_preset : str, default="aggregation-fast"
        CKKS parameters.
    allow_insecure : bool, default=False
        Accept Paillier keys under 2048 bits (tests and demos only).
    random_state : int, default=0
        Seed for local shuffling and dropouts.
    executor : {"inprocess", "processes", "flower"} or Executor, default="inprocess"
        Where clients run: here, one after another; in a pool of worker processes
        (same coefficients, faster when encryption dominates); or on Flower's
        simulation engine, one virtual SuperNode per client plus one for the key
        holder (``pip install "he-fed[flower]"``). See :mod:`he_fed.runtime`.
    workers : int or None, default=None
        Worker processes (``processes``) or simulation actors (``flower``);
        None means all cores.
    threshold : str or None, default=None
        ``"t/n"``, e.g. ``"3/5"``: no single key holder; a dealer shares the
        Paillier key among ``n`` share holders, any ``t`` of which decrypt, each
        enforcing the key holder's policy itself. Paillier schemes only, in process
        or on ``processes``. The coefficients are those of a single key holder.
    checkpoint : path-like or None, default=None
        A directory where ``fit`` saves after every round what it needs to
        continue (keys, the key holder's sealed state, the model chain, the
        history; see :mod:`he_fed.runtime.checkpoint`). A later ``fit`` with the
        same parameters and data resumes from the last completed round, with
        the same coefficients; another run's checkpoint is refused. It holds
        secret keys: keep it as private as a secret key. ``inprocess`` and
        ``processes`` executors only.
    n_clients : int or None, default=None
        When ``fit`` gets no ``groups``: deal the rows IID (shuffled by
        ``random_state``, equal shares) to this many clients. None makes ``groups``
        required. A simulation convenience, and what scikit-learn's own checks
        use; model selection with real clients routes ``groups`` to ``fit``
        (see the README's "Searching hyperparameters").

    Attributes
    ----------
    coef_, intercept_
        The global model on raw (unstandardised) features.
    history_ : list of RoundRecord
        Per training round: ``metric``, ``loss`` (on ``eval_set``, else the training
        data), ``timings`` (seconds per phase, summed over clients), ``wall_s``
        (the round's wall-clock time), ``bytes_up`` and ``bytes_down`` per client,
        ``contributors``, ``dropped``, ``clipped`` and ``skipped``
        (``record.to_dict()`` for JSON).
    setup_ : dict
        Key generation time, key material sizes, the standardisation rounds (as
        ``RoundRecord`` with round 0 under ``"statistics"``), the
        executor's name and its start-up time (``startup_s``: spawning workers or
        waiting for Flower nodes).
    n_clients_ : int
        Number of clients (distinct groups).
"""
