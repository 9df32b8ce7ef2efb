# The table of contents of the project. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NMT := $(BIN)/nmt
STAMP := $(VENV)/.installed
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

# make demo: the bottleneck finding on the embedded synthetic corpus, on a CPU, offline.
DEMO_DIR ?= demo-output
DEMO_MINUTES ?= 3
DEMO_PAIRS ?= 30000
# Train on sentences of up to 30 words, as RNNencdec-30 and RNNsearch-30 in Bahdanau et al. 2014; the test set
# keeps every length, up to 72 words. In 3 CPU minutes the fixed-vector model learns short sentences only this
# way: with every length it barely learns at all (docs/results.md).
DEMO_MAX_WORDS ?= 30
DEMO_MODELS := rnn rnnsearch transformer

.PHONY: help install demo attention-lab test test-fast lint format bench bench-prepare reproduce clean stress

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv with the CPU build of torch and nmt (editable, with dev tools)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The pinned CPU wheel first: an open-ended torch requirement could pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## the main job on the embedded synthetic corpus (CPU, offline, about 10 minutes)
	@echo "== 1/4 prepare the synthetic Ulami-Zerak corpus"
	$(OFFLINE) $(NMT) prepare --recipe data/recipes/synthetic.yaml --synthetic-size $(DEMO_PAIRS) \
		--out $(DEMO_DIR)/data --force
	@for model in $(DEMO_MODELS); do \
		echo "== 2/4 train $$model for $(DEMO_MINUTES) minutes on sentences of up to $(DEMO_MAX_WORDS) words"; \
		$(OFFLINE) $(NMT) train --data $(DEMO_DIR)/data --model $$model --preset small \
			--max-source-len $(DEMO_MAX_WORDS) --max-target-len $(DEMO_MAX_WORDS) \
			--max-minutes $(DEMO_MINUTES) --device cpu --out $(DEMO_DIR)/runs/$$model --force || exit $$?; \
	done
	@echo "== 3/4 translate the test set with each model and score BLEU by source length"
	$(OFFLINE) $(NMT) eval --source $(DEMO_DIR)/data/text/test.ul --reference $(DEMO_DIR)/data/text/test.zk \
		$(foreach m,$(DEMO_MODELS),--checkpoint $(m)=$(DEMO_DIR)/runs/$(m)/best.pt) --device cpu \
		--json $(DEMO_DIR)/bleu_by_length.json --csv $(DEMO_DIR)/bleu_by_length.csv \
		--plot $(DEMO_DIR)/bleu_by_length.png | tee $(DEMO_DIR)/bleu_by_length.txt
	@echo "== 4/4 one long test sentence translated by rnnsearch, with its attention heatmap"
	awk 'NF >= 25 && NF <= 35 { print; exit }' $(DEMO_DIR)/data/text/test.ul > $(DEMO_DIR)/sample.ul
	$(OFFLINE) $(NMT) translate --checkpoint $(DEMO_DIR)/runs/rnnsearch/best.pt --device cpu \
		--input $(DEMO_DIR)/sample.ul --output $(DEMO_DIR)/sample.zk --attention-plot $(DEMO_DIR)/attention
	@echo "source:      $$(cat $(DEMO_DIR)/sample.ul)"
	@echo "translation: $$(cat $(DEMO_DIR)/sample.zk)"
	@echo "Done: see $(DEMO_DIR)/bleu_by_length.png, $(DEMO_DIR)/bleu_by_length.txt and $(DEMO_DIR)/attention/"

# make attention-lab: what each part of attention is for (docs/attention.md, docs/results.md). On the synthetic
# corpus, RNNsearch with each scoring function and the Transformer with each way of encoding positions, and
# with the 1/sqrt(d_k) scaling off, each variant trained for the same minutes as the others of its model; then
# one `nmt eval`: BLEU by source length, each variant tested against the first of its model, and how well its
# cross-attention aligns words (alignment error rate against the grammar's own alignment); last, the encoder's
# self-attention on one sentence, every layer and head, and what the relative pronoun "ke" looks at.
LAB_DIR ?= lab-output
LAB_PAIRS ?= 30000
LAB_MAX_WORDS ?= 30
LAB_RNNSEARCH_MINUTES ?= 1
LAB_TRANSFORMER_MINUTES ?= 1.5
LAB_BEAM ?= 1
# name:model:option. Each variant differs from the first of its model by that one option.
LAB_VARIANTS := \
	additive:rnnsearch:--attention=additive \
	dot:rnnsearch:--attention=dot \
	scaled-dot:rnnsearch:--attention=scaled-dot \
	general:rnnsearch:--attention=general \
	cosine:rnnsearch:--attention=cosine \
	linear:rnnsearch:--attention=linear \
	sinusoidal:transformer:--positions=sinusoidal \
	learned:transformer:--positions=learned \
	rotary:transformer:--positions=rotary \
	no-positions:transformer:--positions=none \
	unscaled:transformer:--no-scale-attention
lab_name = $(firstword $(subst :, ,$(1)))
# The paired tests: each variant against the first of its model.
LAB_COMPARE := $(foreach v,dot scaled-dot general cosine linear,--compare $(v)=additive) \
	$(foreach v,learned rotary no-positions unscaled,--compare $(v)=sinusoidal)

attention-lab: $(STAMP)  ## scoring functions, positions and scaling side by side (CPU, offline, under 20 minutes)
	@echo "== 1/4 prepare the synthetic corpus with its gold word alignments"
	$(OFFLINE) $(NMT) prepare --recipe data/recipes/synthetic.yaml --synthetic-size $(LAB_PAIRS) \
		--out $(LAB_DIR)/data --force
	@for variant in $(LAB_VARIANTS); do \
		name=$${variant%%:*}; rest=$${variant#*:}; model=$${rest%%:*}; option=$${rest#*:}; \
		minutes=$(LAB_RNNSEARCH_MINUTES); [ $$model = transformer ] && minutes=$(LAB_TRANSFORMER_MINUTES); \
		echo "== 2/4 train $$name ($$model $$option) for $$minutes minutes"; \
		$(OFFLINE) $(NMT) train --data $(LAB_DIR)/data --model $$model $$option --preset small \
			--max-source-len $(LAB_MAX_WORDS) --max-target-len $(LAB_MAX_WORDS) \
			--max-minutes $$minutes --device cpu --out $(LAB_DIR)/runs/$$name --force || exit $$?; \
	done
	@echo "== 3/4 BLEU by source length and alignment error rate of every variant"
	$(OFFLINE) $(NMT) eval --source $(LAB_DIR)/data/text/test.ul --reference $(LAB_DIR)/data/text/test.zk \
		--alignment $(LAB_DIR)/data/text/test.align --beam $(LAB_BEAM) --device cpu \
		$(foreach v,$(LAB_VARIANTS),--checkpoint $(call lab_name,$(v))=$(LAB_DIR)/runs/$(call lab_name,$(v))/best.pt) \
		$(LAB_COMPARE) --json $(LAB_DIR)/lab.json --csv $(LAB_DIR)/lab.csv --plot $(LAB_DIR)/lab.png \
		| tee $(LAB_DIR)/lab.txt
	@echo "== 4/4 the transformer's self-attention on a sentence with a relative clause"
	awk 'NF >= 10 && NF <= 16 && / ke / { print; exit }' $(LAB_DIR)/data/text/test.ul > $(LAB_DIR)/sample.ul
	@test -s $(LAB_DIR)/sample.ul || { echo "no test sentence of 10-16 words with 'ke'"; exit 1; }
	$(OFFLINE) $(NMT) translate --checkpoint $(LAB_DIR)/runs/sinusoidal/best.pt --device cpu \
		--input $(LAB_DIR)/sample.ul --output $(LAB_DIR)/sample.zk --attention-plot $(LAB_DIR)/encoder \
		--attention-kind encoder --attention-layer all --attention-head all
	$(OFFLINE) $(NMT) translate --checkpoint $(LAB_DIR)/runs/sinusoidal/best.pt --device cpu \
		--input $(LAB_DIR)/sample.ul --output $(LAB_DIR)/sample.zk --attention-plot $(LAB_DIR)/ke \
		--attention-kind encoder --attention-layer all --attention-head all --attention-token ke
	@echo "source:      $$(cat $(LAB_DIR)/sample.ul)"
	@echo "translation: $$(cat $(LAB_DIR)/sample.zk)"
	@echo "Done: see $(LAB_DIR)/lab.txt, $(LAB_DIR)/lab.png, $(LAB_DIR)/encoder/ and $(LAB_DIR)/ke/"

TEST_STAMP := $(VENV)/.test-installed

# The ctranslate2 extra (a 40 MB wheel) on top of the dev install, so that the suite tests `nmt export`.
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,ctranslate2]'
	touch $(TEST_STAMP)

test: $(TEST_STAMP)  ## run the test suite
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q

lint: $(STAMP)  ## ruff: lint and formatting check
	$(BIN)/ruff check nmt cli tests
	$(BIN)/ruff format --check nmt cli tests

format: $(STAMP)  ## ruff: fix what can be fixed automatically
	$(BIN)/ruff check --fix nmt cli tests
	$(BIN)/ruff format nmt cli tests

# make stress: reliability at scale, run once (docs/reliability.md); the suite runs each script in a small size.
# kill -9 at 20 random moments of `nmt train`, each resumed; 100,000 hostile lines through `nmt translate` and
# `nmt eval`; a data-parallel run (torchrun, gloo) that loses a rank, then resumes; two torchrun "nodes" on this
# machine against one process. One thread per process; each script prints its summary and exits 1 on a failure.
STRESS_SEED ?= 0
STRESS_SCRIPTS := kill_train fuzz_io ddp_failure two_nodes

stress: $(STAMP)  ## reliability at scale: kill -9, 100,000 fuzzed lines, a lost DDP rank, two nodes (CPU, ~40 min)
	@failed=""; for script in $(STRESS_SCRIPTS); do \
		echo "== tests/stress/$$script.py --seed $(STRESS_SEED)"; \
		$(OFFLINE) OMP_NUM_THREADS=1 $(BIN)/python tests/stress/$$script.py --seed $(STRESS_SEED) \
			|| failed="$$failed $$script"; \
	done; \
	if [ -n "$$failed" ]; then echo "make stress: failed:$$failed"; exit 1; fi

BENCH_ARGS ?= --quick --out docs/bench/cpu.json
BENCH_STAMP := $(VENV)/.bench-installed

# The bench extra (transformers and ctranslate2, for the MarianMTModel and CTranslate2 references; psutil) on
# top of the dev install.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)  ## speed and memory benchmarks (JSON in docs/bench/; BENCH_ARGS="--device cuda" for a GPU)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m nmt.cli.bench $(BENCH_ARGS)

# make bench-prepare: `nmt prepare` at 300k, 1.2M and 4.8M pairs (Europarl it-en repeated, copies marked so that
# they stay distinct; the synthetic pair without the corpus), 2 workers each, in a child process: wall time and
# peak RSS in docs/bench/prepare.json and docs/prepare-scaling.png (docs/results.md, section 9).
PREPARE_BENCH_ARGS ?=

bench-prepare: $(STAMP)  ## nmt prepare at 300k/1.2M/4.8M pairs: time and peak memory (CPU, ~20 min)
	$(OFFLINE) OMP_NUM_THREADS=1 $(BIN)/python -m nmt.cli.bench_prepare $(PREPARE_BENCH_ARGS)

clean:  ## remove the virtual environment, caches and demo output
	rm -rf $(VENV) .pytest_cache .ruff_cache $(DEMO_DIR) $(LAB_DIR) *.egg-info

# make reproduce: Bahdanau et al. 2014's experiment at our scale (docs/results.md). Five systems on one corpus:
# RNNencdec-30/-50 and RNNsearch-30/-50 (trained on sentences of up to 30 or 50 words) and a Transformer,
# then BLEU by source length with bootstrap bands. On a GPU: make -j5 reproduce REPRO_DEVICE=cuda.
REPRO_CORPUS ?= ../shared/corpora/europarl-it-en
REPRO_SRC ?= it
REPRO_TGT ?= en
REPRO_VOCAB ?= 8000
REPRO_DATA ?= data/prepared/europarl-it-en
REPRO_OUT ?= runs/reproduce
REPRO_PRESET ?= small
REPRO_MINUTES ?= 8
REPRO_DEVICE ?= auto
REPRO_TEST_LINES ?= 1000
REPRO_BEAM ?= 5
REPRO_SYSTEMS := rnnencdec-30 rnnencdec-50 rnnsearch-30 rnnsearch-50 transformer-50
# rnnencdec-30 -> model rnn, up to 30 words
repro_model = $(patsubst rnnencdec,rnn,$(firstword $(subst -, ,$(1))))
repro_words = $(lastword $(subst -, ,$(1)))

reproduce: $(REPRO_OUT)/bleu_by_length.json  ## the BLEU-vs-length experiment on Europarl it-en (REPRO_* to change)

$(REPRO_DATA)/manifest.json: | $(STAMP)
	$(OFFLINE) $(NMT) prepare --source-lang $(REPRO_SRC) --target-lang $(REPRO_TGT) \
		--train-prefix $(REPRO_CORPUS)/train --dev-prefix $(REPRO_CORPUS)/dev --test-prefix $(REPRO_CORPUS)/test \
		--vocab-size $(REPRO_VOCAB) --num-workers 2 --out $(REPRO_DATA)

$(REPRO_OUT)/%/best.pt: | $(REPRO_DATA)/manifest.json
	$(OFFLINE) $(NMT) train --data $(REPRO_DATA) --model $(call repro_model,$*) --preset $(REPRO_PRESET) \
		--max-source-len $(call repro_words,$*) --max-target-len $(call repro_words,$*) \
		--max-minutes $(REPRO_MINUTES) --device $(REPRO_DEVICE) --out $(REPRO_OUT)/$* --force

$(REPRO_OUT)/bleu_by_length.json: $(foreach s,$(REPRO_SYSTEMS),$(REPRO_OUT)/$(s)/best.pt)
	head -n $(REPRO_TEST_LINES) $(REPRO_DATA)/text/test.$(REPRO_SRC) > $(REPRO_OUT)/test.$(REPRO_SRC)
	head -n $(REPRO_TEST_LINES) $(REPRO_DATA)/text/test.$(REPRO_TGT) > $(REPRO_OUT)/test.$(REPRO_TGT)
	$(OFFLINE) $(NMT) eval --source $(REPRO_OUT)/test.$(REPRO_SRC) --reference $(REPRO_OUT)/test.$(REPRO_TGT) \
		$(foreach s,$(REPRO_SYSTEMS),--checkpoint $(s)=$(REPRO_OUT)/$(s)/best.pt) \
		--beam $(REPRO_BEAM) --device $(REPRO_DEVICE) --csv $(REPRO_OUT)/bleu_by_length.csv \
		--plot $(REPRO_OUT)/bleu_by_length.png --json $@ | tee $(REPRO_OUT)/bleu_by_length.txt
