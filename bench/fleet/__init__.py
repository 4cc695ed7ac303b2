"""`edge-agent bench fleet`: scripted agents whose skill is known, on the real fabric (processes and broker).

    profiles  the scripted agents (skill per benchmark and difficulty, price, latency) and their node configs
    stream    the seeded item stream (GSM8K sample, MedQA, BBH)
    processes the broker, one process per agent, the router: started with the CLI as an operator would
    driver    the phases over MQTT: every agent alone, the router's single choice, a 3-way vote, and Exp2
              (the best agent SIGKILLed mid-stream)
    metrics   accuracy, oracle, routing share to the best agent, recovery, cost per correct answer (pure)
    report    the Markdown section and the PNG figures committed beside it

The agents are scripted (bench/scripted.py): their accuracy is configured, so these runs test
routing and voting against a known truth; they say nothing about any language model.
"""
