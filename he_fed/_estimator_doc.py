"""The parameters and attributes the federated estimators share, as one docstring.

Private: :mod:`he_fed.federated` appends it to both estimators' docstrings.
"""

from __future__ import annotations

__all__ = ["PARAMS_DOC"]

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
        Epochs each client trains per round. 1 with full batches is FedSGD: each
        client then clips each record's gradient rather than its update, so the
        aggregates are functions of the cohort's pooled rows up to each client's
        rounding (``he_fed.privacy.clipped_gradient_mean``).
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
        enforcing the key holder's policy itself. Paillier schemes only, in process,
        on ``processes`` or on ``flower`` (share-holder nodes). The coefficients
        are those of a single key holder.
    checkpoint : path-like or None, default=None
        A directory where ``fit`` saves after every round what it needs to
        continue (keys, the key holder's sealed state, the model chain, the
        history; see :mod:`he_fed.runtime.checkpoint`). A later ``fit`` with the
        same parameters and data resumes from the last completed round, with
        the same coefficients; another run's checkpoint is refused. It holds
        secret keys: keep it as private as a secret key. On Flower, the
        ServerApp keeps its own checkpoint there (no secret) and the nodes their
        own state; see :mod:`he_fed.runtime.flower.resume`. Not yet with
        ``threshold``, ``dp_epsilon``, ``validation_split`` or a server optimizer
        other than ``"avg"``: a checkpoint does not save their state, so ``fit``
        refuses them.
    n_clients : int or None, default=None
        When ``fit`` gets no ``groups``: deal the rows IID (shuffled by
        ``random_state``, equal shares) to this many clients. None makes ``groups``
        required. A simulation convenience, and what scikit-learn's own checks
        use; model selection with real clients routes ``groups`` to ``fit``
        (see the README's "Searching hyperparameters").
    validation_split : float, default=0.0
        Fraction of each client's rows it holds out to score every round's global
        model on. The figures travel encrypted as one more round
        (:mod:`he_fed.protocol.evaluation`); only the global validation metric
        and loss are released, into ``history_``. 0 turns evaluation off.
    validation_every : int, default=1
        Score every this many rounds' model (and the last round's); the other
        rounds' validation figures are NaN. Other than 1 only with
        ``validation_split``.
    early_stopping : int or None, default=None
        Patience: stop after this many evaluated rounds without a lower global
        validation loss, and keep the best round's model (needs
        ``validation_split``).
    server_optimizer : {"avg", "avgm", "adam", "yogi"}, default="avg"
        How the key holder moves the global model by the released mean update:
        FedAvg, FedAvgM (server momentum 0.9) or FedAdam/FedYogi (Reddi et al.,
        ICLR 2021; β = (0.9, 0.99), τ = 1e-3), each with step ``server_lr``
        (:mod:`he_fed.protocol.optimizers`). The adaptive ones take steps of about
        ``server_lr`` per weight, so they want ``server_lr`` near 0.1.
    prox_mu : float, default=0.0
        FedProx's proximal term on the clients (see ``LogisticRegressionGD``).

    dp_epsilon : float or None, default=None
        Differential privacy's target epsilon (None: no DP), calibrated for ``rounds``
        releases of cohorts of ``min_clients`` (default: all, or a majority with dropout).
        The fitted ``coef_``/``intercept_`` are then the mean of the last half of the
        round models (post-processing, no privacy cost); ``history_`` records each round's.
    dp_delta : float, default=1e-5
        The run's delta.
    dp_level : {"record", "client"}, default="record"
        ``record``: one DP-SGD step per round (per-record gradients clipped to
        ``dp_clip``; the step is ``learning_rate`` (default 4 logistic, 1 linear)
        times ``server_lr``; ``local_epochs``, ``batch_size`` and ``prox_mu`` are
        not used, so other values than their defaults are refused); ``client``:
        each client's update clipped to ``dp_clip``. Either way ``clip`` is not
        used (refused unless left at its default). See :mod:`he_fed.privacy`. Not
        with ``validation_split``, ``checkpoint`` or the flower executor yet.
    dp_clip : float, default=1.0
        The L2 clip bound of one record's gradient or one client's update.
    dp_noise_multiplier : float or None, default=None
        Fix the noise instead of calibrating it; the run stops when the target is spent.
    dp_sampling_rate : float or None, default=None
        Poisson sampling at ``record`` level: each client includes each record
        with this probability per round (coins from ``secrets``), the release is
        divided by the expected batch ``q · N``, and the accountant amplifies
        each round (Balle, Barthe and Gaboardi 2018) before composing them in
        ``dp-accounting``'s PLD. None or 1.0: every record, every round.
    feature_bounds, target_bounds : (low, high), optional
        Public bounds of the features (numbers or one per feature) and of a
        regression target, which a private fit needs instead of standardising.
        Values outside them are clamped to them, with a ``DatasetWarning``.

    ``learning_rate`` and ``alpha`` may also be lists of candidates: ``fit``
    then trains one federation per combination and keeps the one whose best
    round had the lowest federated validation loss (needs ``validation_split``);
    ``learning_rate_`` and ``alpha_`` give the chosen values and
    ``setup_["selection"]`` every candidate's loss.

    Attributes
    ----------
    coef_, intercept_
        The global model on raw (unstandardised) features.
    history_ : list of RoundRecord
        Per training round: ``metric``, ``loss`` (on ``eval_set``, else the training
        data), ``timings`` (seconds per phase, summed over clients), ``wall_s``
        (the round's wall-clock time), ``bytes_up`` and ``bytes_down`` per client,
        ``contributors``, ``dropped``, ``clipped``, ``skipped``, with
        ``validation_split`` the global ``validation_metric`` and
        ``validation_loss``, and with DP the ``epsilon`` spent
        (``record.to_dict()`` for JSON). Early stopping ends
        it at the round that stopped training.
    setup_ : dict
        Key generation time, key material sizes, the standardisation rounds (as
        ``RoundRecord`` with round 0 under ``"statistics"``), ``best_round``
        (the round whose model was kept), the
        executor's name and its start-up time (``startup_s``: spawning workers or
        waiting for Flower nodes), why training ``stopped`` early (or None) and the
        ``privacy`` summary (or None).
    n_clients_ : int
        Number of clients (distinct groups).
    learning_rate_, alpha_
        The learning rate and L2 penalty trained with (the chosen candidates).
"""
