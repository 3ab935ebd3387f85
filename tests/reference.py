"""A list-based reference recorder: the obvious code the buffer must agree with."""


class ListRecorder:
    """Keeps every env's steps in Python lists; pops in torchbuf's order (env by env)."""

    def __init__(self, obs0):
        self.n = len(obs0)
        self.frag = [{"obs": [o], "steps": [], "start_t": 0} for o in obs0]
        self.done = [[] for _ in range(self.n)]  # finished (obs, steps, ep_len) per env
        self.ep_t = [0] * self.n

    def step(self, acts, obs, rews, terminated, truncated, final_obs, infos):
        for e in range(self.n):
            f = self.frag[e]
            f["steps"].append((acts[e], rews[e], terminated[e], truncated[e], infos[e]))
            self.ep_t[e] += 1
            if terminated[e] or truncated[e]:
                f["obs"].append(final_obs[e])
                self.done[e].append((f["obs"], f["steps"], self.ep_t[e]))
                self.frag[e], self.ep_t[e] = {"obs": [obs[e]], "steps": []}, 0
            else:
                f["obs"].append(obs[e])

    def step_rows(self, rows, acts, obs, rews, terminated, truncated, final_obs, infos):
        """Steps only ``rows``; a final obs of ``None`` leaves the reset obs to come."""
        for j, e in enumerate(rows):
            f = self.frag[e]
            f["steps"].append((acts[j], rews[j], terminated[j], truncated[j], infos[j]))
            self.ep_t[e] += 1
            if terminated[j] or truncated[j]:
                f["obs"].append(obs[j] if final_obs[j] is None else final_obs[j])
                self.done[e].append((f["obs"], f["steps"], self.ep_t[e]))
                self.frag[e], self.ep_t[e] = (
                    {"obs": [None if final_obs[j] is None else obs[j]], "steps": []},
                    0,
                )
            else:
                f["obs"].append(obs[j])

    def reset_env(self, e, obs):
        """A reset of env ``e``: a running episode is cut there (its fragment ends)."""
        f = self.frag[e]
        if f["obs"][-1] is not None and f["steps"]:
            self.done[e].append((f["obs"], f["steps"], 0))
        self.frag[e], self.ep_t[e] = {"obs": [obs], "steps": []}, 0

    def n_unpopped(self):
        return sum(len(s) for d in self.done for _, s, _ in d) + sum(len(f["steps"]) for f in self.frag)

    def pop_trajectories(self, finished_only=False):
        out = []
        for e in range(self.n):
            out += [(e, o, s, n) for o, s, n in self.done[e]]
            f = self.frag[e]
            if not finished_only and f["steps"]:
                out.append((e, f["obs"], f["steps"], 0))
                self.frag[e] = {"obs": [f["obs"][-1]], "steps": []}
            self.done[e] = []
        return out  # (env, obs list, step tuples, ep_len or 0 if running)

    def pop_transitions(self):
        return [(o[i], s[i], o[i + 1]) for _, o, s, _ in self.pop_trajectories() for i in range(len(s))]
