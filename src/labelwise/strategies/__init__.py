"""Query strategies: a utility (scorer or committee) composed with a selector, named in a registry.

A strategy receives a :class:`QueryContext` (the candidates, the labeled set, a fitted model and
the backend over the pool's rows) and returns a :class:`Selection`: pool indices, best first,
with their utilities. Strategies never fit or modify the caller's model; a committee fits clones.
They read the pool only through the backend (:mod:`labelwise.strategies.backends`), so each is
written once and runs on a matrix in memory or on a partitioned pool on a cluster alike.

Names (see :func:`available_strategies`) are ``scorer`` or ``scorer+selector``:

- scorers: ``random``, ``least_confident`` (alias ``lc``), ``margin``, ``entropy``, ``qbc`` (vote
  entropy of a bagged committee), ``qbc-kl`` (KL divergence to the committee's consensus),
  ``bald`` (mutual information over Monte Carlo dropout samples, for models that draw them);
- selectors: ``top`` (implicit), ``kmeans`` (utility-weighted k-means over the top candidates),
  ``kcenter`` (greedy k-center among the top candidates), ``density`` (utility × typicality);
- whole strategies: ``coreset`` (greedy k-center over the pool, no utility), ``badge`` (k-means++
  on gradient embeddings; both run on a random 50,000 of the candidates, changed by a name such as
  ``badge(max_candidates=0.05)`` (a share) or ``coreset(max_candidates=all)``), ``bandit``
  (learns which strategy helps, see :mod:`labelwise.strategies.bandit`), and ``default``;
- for multi-label models (per-label probabilities, see :mod:`labelwise.strategies.kinds`):
  ``mean-margin``, ``min-margin``, ``mmc``, ``lci``
  (:mod:`~labelwise.strategies.multilabel_scorers`), ``qbc`` (label-set vote entropy),
  ``random`` and ``coreset``, with the same selectors and ``+explore``; ``default`` and
  ``bandit`` take the project's kind. A name of the other kind is refused.

The modules: :mod:`~labelwise.strategies.base` (context, selection, protocols),
:mod:`~labelwise.strategies.scorers` (utilities), :mod:`~labelwise.strategies.selectors` (batch
selection algorithms), :mod:`~labelwise.strategies.among_top` (selectors as strategies),
:mod:`~labelwise.strategies.utility` and :mod:`~labelwise.strategies.sampling` (the strategies),
:mod:`~labelwise.strategies.bandit`, :mod:`~labelwise.strategies.registry` (names and
:func:`~labelwise.strategies.factory.make_strategy`), :mod:`~labelwise.strategies.backends`
(what a strategy reads the pool through), :mod:`~labelwise.strategies.query` (a batch with its
mix and reasons), :mod:`~labelwise.strategies.reasons` (why an item was chosen) and
:mod:`~labelwise.strategies.multilabel_reasons` (what a multi-label pick says).
"""
