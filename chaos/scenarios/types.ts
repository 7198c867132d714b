import type { Recorder } from "../report";

export interface ScenarioContext {
  quick: boolean;
  rec: Recorder;
}

export interface Scenario {
  id: number;
  name: string;
  fault: string;
  /** Upper bound on the scenario's run time (s); past it the runner fails it and cleans up. */
  budget(quick: boolean): number;
  run(ctx: ScenarioContext): Promise<void>;
}
